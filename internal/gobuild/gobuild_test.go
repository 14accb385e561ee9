package gobuild

import "testing"

func TestProgramName(t *testing.T) {
	for _, tc := range []struct{ pkg, want string }{
		{"./cmd/egressd", "egressd"},
		{"github.com/nats-io/nats-server/v2", "nats-server"},
		{"github.com/example/tool", "tool"},
		{"github.com/example/vet", "vet"},
	} {
		if got := programName(tc.pkg); got != tc.want {
			t.Errorf("programName(%q) = %q, want %q", tc.pkg, got, tc.want)
		}
	}
}

func TestEnvOverridesBuild(t *testing.T) {
	t.Setenv("GOBUILD_TEST_BIN", "/opt/prebuilt/tool")
	b := Binary{Pkg: "./does/not/exist", Env: "GOBUILD_TEST_BIN"}
	got, err := b.Path()
	if err != nil || got != "/opt/prebuilt/tool" {
		t.Fatalf("Path() = %q, %v; want the path from the environment", got, err)
	}
	b.Remove() // built nothing: removes nothing
}

func TestBuildError(t *testing.T) {
	b := Binary{Pkg: "./does/not/exist"}
	if _, err := b.Path(); err == nil {
		t.Fatal("Path() built a package that does not exist")
	}
	b.Remove()
}
