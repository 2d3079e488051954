package app

import (
	"strings"
	"testing"
)

// TestRotateRootRefusesBadInput checks the refusals made before Vault is
// contacted (its address is a closed port): each exits 2 naming the flag.
func TestRotateRootRefusesBadInput(t *testing.T) {
	env := map[string]string{"VAULT_ADDR": "http://" + closedPort(t), "VAULT_TOKEN": secretToken}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"vault", "rotate-root", "--context", "east"}, `"to" not set`},
		{[]string{"vault", "rotate-root", "--to", "meshtrust-root", "--context", "east"}, "--from and --to are both"},
		{[]string{"vault", "rotate-root", "--to", "r2", "--context", "east", "--old-root-wait", "1h"}, "invalid --old-root-wait 1h: must be at least --workload-cert-ttl 24h"},
		{[]string{"vault", "rotate-root", "--to", "r2"}, "name every enrolled cluster with --context, or pass --all-enrolled"},
		{[]string{"vault", "rotate-root", "--to", "r2", "--all-enrolled", "--context", "east"}, "exclude each other"},
	} {
		code, stdout, stderr := run(t, env, tc.args...)
		if code != 2 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", tc.args, code, stderr, tc.want)
		}
		if strings.Contains(stdout+stderr, secretToken) {
			t.Errorf("%v: the token was printed", tc.args)
		}
	}
	// The same flags with a valid wait get past validation, to Vault.
	code, _, stderr := run(t, env, "vault", "rotate-root", "--to", "r2", "--context", "east", "--old-root-wait", "25h")
	if code != 2 || !strings.Contains(stderr, "unreachable") {
		t.Errorf("valid flags: exit %d, %q; want Vault unreachable", code, stderr)
	}
}

func TestKillHook(t *testing.T) {
	for _, spec := range []string{"", "after", "after:x", "before:1"} {
		if killHook(spec) != nil {
			t.Errorf("%q: want no hook", spec)
		}
	}
	if killHook("after:2") == nil || killHook("mid:1") == nil {
		t.Error("want a hook for after:2 and mid:1")
	}
}
