package natstest

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// A message published to a stream on a single server survives a restart of
// that server on the same URL with the same store.
func TestRunRestartKeepsStore(t *testing.T) {
	s := Run(t)
	nc, err := nats.Connect(s.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(10*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := nc.JetStream()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.AddStream(&nats.StreamConfig{Name: "T", Subjects: []string{"t.>"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish("t.a", []byte("kept")); err != nil {
		t.Fatal(err)
	}
	s.Stop()
	if s.Running() {
		t.Fatal("Running after Stop")
	}
	s.Restart()
	msg, err := js.GetMsg("T", 1, nats.MaxWait(ReadyLimit))
	if err != nil {
		t.Fatal(err)
	}
	if string(msg.Data) != "kept" {
		t.Fatalf("got %q after restart, want %q", msg.Data, "kept")
	}
}

// An R3 stream in a 3-server cluster keeps taking and serving messages
// with its leader stopped, and the stopped server comes back as a peer.
func TestClusterStopLeader(t *testing.T) {
	c := RunCluster(t, 3)
	nc, err := nats.Connect(c.URLs(), nats.MaxReconnects(-1), nats.ReconnectWait(10*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := nc.JetStream(nats.MaxWait(ReadyLimit))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.AddStream(&nats.StreamConfig{Name: "T", Subjects: []string{"t.>"}, Replicas: 3}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish("t.a", []byte("one")); err != nil {
		t.Fatal(err)
	}
	leader := c.StreamLeader("", "T")
	if leader < 0 {
		t.Fatal("no stream leader")
	}
	c.Servers[leader].Stop()
	if _, err := js.Publish("t.a", []byte("two"), nats.RetryAttempts(100), nats.RetryWait(50*time.Millisecond)); err != nil {
		t.Fatalf("publish with the leader stopped: %v", err)
	}
	info, err := js.StreamInfo("T")
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 2 {
		t.Fatalf("%d messages, want 2", info.State.Msgs)
	}
	c.Servers[leader].Restart()
	c.WaitReady()
}

// A client through a proxy loses its connection when the proxy is cut,
// cannot reconnect while it is, and reconnects once healed.
func TestProxyCutHeal(t *testing.T) {
	s := Run(t)
	p := NewProxy(t, s.URL()[len("nats://"):])
	reconnected := make(chan struct{}, 1)
	nc, err := nats.Connect(p.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(10*time.Millisecond),
		nats.ReconnectHandler(func(*nats.Conn) { reconnected <- struct{}{} }))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	p.Cut()
	if err := nc.FlushTimeout(100 * time.Millisecond); err == nil {
		t.Fatal("flush through a cut proxy succeeded")
	}
	p.Heal()
	select {
	case <-reconnected:
	case <-time.After(ReadyLimit):
		t.Fatal("no reconnect after heal")
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
}
