package fleet

import (
	"context"
	"net/netip"
	"net/url"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/egressd/egressd/enforce"
	"github.com/egressd/egressd/internal/natstest"
)

// NATS permissions decide who may open firewalls: with the permissions
// fleet/README.md gives each role, a resolver's approvals reach an agent,
// and a client of the same server without publish permission on the
// approval subject cannot store one there, so the agent installs nothing
// from it.
func TestOnlyPermittedPublishersOpenFirewalls(t *testing.T) {
	user := func(name string, pub, sub []string) *server.User {
		return &server.User{Username: name, Password: name + "-secret", Permissions: &server.Permissions{
			Publish:   &server.SubjectPermission{Allow: pub},
			Subscribe: &server.SubjectPermission{Allow: sub},
		}}
	}
	s := natstest.RunWith(t, func(o *server.Options) {
		o.Users = []*server.User{
			user("resolver", []string{"egressd.approvals.staff", "$JS.API.>"}, []string{"_INBOX.>", "egressd.applied.>"}),
			user("agent", []string{"egressd.applied.gw-b", "$JS.API.>"}, []string{"_INBOX.>"}),
			// Any other client of the account: its own subjects only.
			user("other", []string{"other.>"}, []string{"_INBOX.>", "other.>"}),
		}
	})
	as := func(name string) string {
		u, err := url.Parse(s.URL())
		if err != nil {
			t.Fatal(err)
		}
		u.User = url.UserPassword(name, name+"-secret")
		return u.String()
	}

	fw := newFakeFW(nil)
	agent, m := node(t, Options{Servers: []string{as("agent")}, Node: "gw-b", Enforce: []string{"staff"}, Apply: fw})
	waitFor(t, "agent ready", agent.ReplayDone)

	// The other client publishes a well-formed approval on the subject.
	rogue := good("other-1")
	rogue.Scope, rogue.Client, rogue.IPs = ScopeGroup, "", []string{"203.0.113.66"}
	// The server refuses it (a permissions violation, no acknowledgement:
	// the publish gives up after publish_timeout); whether it was stored
	// is read from the stream below.
	js := natstest.JetStream(t, as("other"))
	ctx, cancel := context.WithTimeout(context.Background(), testPublishTimeout)
	defer cancel()
	if _, err := js.Publish(ctx, ApprovalSubject(DefaultSubjectPrefix, "staff"), encode(t, rogue)); err == nil {
		t.Fatal("a client without publish permission stored an approval")
	}

	// The resolver's approval, published after it, is installed.
	resolver, _ := node(t, Options{Servers: []string{as("resolver")}, Node: "gw-a", Publish: []string{"staff"}})
	pub := resolver.Wrap(&enforce.None{})
	waitFor(t, "resolver connected", resolver.Connected)
	if err := pub.Allow(context.Background(), enforce.Allowance{Group: "staff", IPs: []netip.Addr{netip.MustParseAddr("192.0.2.10")}, Ports: https, TTL: time.Minute, Name: "example.com"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "resolver's approval applied", func() bool { return counter(m.Applied) == 1 })
	if fw.has(groupKey(netip.MustParseAddr("203.0.113.66"))) {
		t.Fatal("the agent installed an approval from a client without publish permission")
	}
	if !fw.has(groupKey(netip.MustParseAddr("192.0.2.10"))) {
		t.Fatal("the resolver's approval is not in the agent's firewall")
	}
	if n := streamMsgs(t, as("resolver")); n != 1 {
		t.Fatalf("the stream holds %d messages, want only the resolver's", n)
	}
}
