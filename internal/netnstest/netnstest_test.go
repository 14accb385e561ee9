package netnstest

import (
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

func scratchNamespace(t *testing.T, role string) Namespace {
	t.Helper()
	return New(t, "egt-"+RandomID()+"-"+role)
}

// threadNetns names the network namespace of the calling thread.
func threadNetns(t *testing.T) string {
	t.Helper()
	link, err := os.Readlink("/proc/thread-self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	return link
}

func TestRunReportsCommandAndOutput(t *testing.T) {
	tests := []struct {
		name    string
		stdin   []byte
		args    []string
		want    string
		wantErr []string
	}{
		{name: "output", args: []string{"sh", "-c", "echo hi"}, want: "hi\n"},
		{name: "stdin", stdin: []byte("fed"), args: []string{"cat"}, want: "fed"},
		{name: "failure", args: []string{"sh", "-c", "echo oops; exit 3"}, want: "oops\n",
			wantErr: []string{"sh -c echo oops; exit 3", "exit status 3", "oops"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := RunInput(tt.stdin, tt.args[0], tt.args[1:]...)
			if got != tt.want {
				t.Errorf("output %q, want %q", got, tt.want)
			}
			if len(tt.wantErr) == 0 && err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if len(tt.wantErr) > 0 && err == nil {
				t.Fatal("want an error, got none")
			}
			for _, part := range tt.wantErr {
				if !strings.Contains(err.Error(), part) {
					t.Errorf("error %q lacks %q", err, part)
				}
			}
		})
	}
}

func TestZeroNamespaceRunsInPlace(t *testing.T) {
	var host Namespace
	if host.String() != "(host)" {
		t.Errorf("String() = %q, want (host)", host.String())
	}
	out, err := host.Exec("echo", "here")
	if err != nil || out != "here\n" {
		t.Errorf("Exec = %q, %v; want \"here\\n\"", out, err)
	}
	if args := host.Command("true").Args; len(args) != 1 || args[0] != "true" {
		t.Errorf("Command args = %q, want [true]", args)
	}
	ran := false
	if err := host.Do(func() error { ran = true; return nil }); err != nil || !ran {
		t.Errorf("Do ran=%t err=%v", ran, err)
	}
}

func TestAddAddrsRejectsBadPrefix(t *testing.T) {
	if err := (Namespace{Name: "unused"}).AddAddrs("eth0", "not-a-prefix"); err == nil {
		t.Fatal("want an error for a malformed prefix")
	}
}

// TestDoEntersAndLeaves checks that fn runs in the namespace and that no
// thread the scheduler gets back is left there.
func TestDoEntersAndLeaves(t *testing.T) {
	Require(t, "this test")
	ns := scratchNamespace(t, "do")
	home := threadNetns(t)
	var inside string
	if err := ns.Do(func() error {
		link, err := os.Readlink("/proc/thread-self/ns/net")
		inside = link
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if inside == home {
		t.Fatalf("fn ran in the caller's namespace %s", home)
	}
	// Many goroutines after many entries: each thread they run on must be
	// back home.
	for range 20 {
		if err := ns.Do(func() error { return nil }); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan string, 50)
	for range 50 {
		wg.Go(func() {
			if link, err := os.Readlink("/proc/thread-self/ns/net"); err != nil || link != home {
				errs <- link
			}
		})
	}
	wg.Wait()
	close(errs)
	for link := range errs {
		t.Errorf("a scheduler thread is in %q, want %q", link, home)
	}
}

func TestVethAndAddrs(t *testing.T) {
	Require(t, "this test")
	a, b := scratchNamespace(t, "a"), scratchNamespace(t, "b")
	if err := Veth(a, "va", b, "vb"); err != nil {
		t.Fatal(err)
	}
	if err := a.AddAddrs("va", "10.203.0.1/24", "fd00:203::1/64"); err != nil {
		t.Fatal(err)
	}
	if err := b.AddAddrs("vb", "10.203.0.2/24"); err != nil {
		t.Fatal(err)
	}
	out, err := a.IP("-6", "addr", "show", "dev", "va")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "fd00:203::1/64 scope global nodad") {
		t.Errorf("IPv6 address missing or without nodad:\n%s", out)
	}
	// A listener opened inside a is reached from a socket opened inside b.
	var ln net.Listener
	if err := a.Do(func() (err error) {
		ln, err = net.Listen("tcp", "10.203.0.1:0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var conn net.Conn
	if err := b.Do(func() (err error) {
		conn, err = net.DialTimeout("tcp", ln.Addr().String(), 2*time.Second)
		return err
	}); err != nil {
		t.Fatalf("no path across the veth pair: %v", err)
	}
	conn.Close()
}
