package cli

import (
	"context"
	"strings"
	"testing"

	vaultapi "github.com/hashicorp/vault/api"
	"k8s.io/client-go/kubernetes"
)

// The checks below close the trust model's edges (issue 12). TestCLI runs
// them as steps, in the state its story has reached.

// enrollRefusesOverlaps runs with east (east.mesh) and west (west.mesh)
// enrolled. A trust domain that equals, contains or falls under theirs is
// refused, naming the cluster it overlaps, and nothing is written; crypto/x509
// would let an intermediate constrained to "mesh" sign east.mesh identities.
// north.mesh, enrolled by a later step, is the case that passes.
func enrollRefusesOverlaps(ctx context.Context, t *testing.T, c *cli, root *vaultapi.Client) {
	for _, tc := range []struct {
		cluster, td, relation, with string
	}{
		{"core", "mesh", `contains "east.mesh"`, "cluster east (Vault policy meshtrust-east)"},
		{"sub", "a.east.mesh", `falls under "east.mesh"`, "cluster east (Vault policy meshtrust-east)"},
		{"twin", "west.mesh", `equals "west.mesh"`, "cluster west (Vault policy meshtrust-west)"},
	} {
		for _, dry := range []bool{true, false} {
			args := []string{"vault", "enroll", "--cluster", tc.cluster, "--trust-domain", tc.td, "--auth", "approle"}
			if dry {
				args = append(args, "--dry-run")
			}
			r := c.run(t, args...)
			if r.code != 2 || !strings.Contains(r.stderr, `refusing trust domain "`+tc.td+`": it `+tc.relation) || !strings.Contains(r.stderr, tc.with) {
				t.Errorf("enroll %s --trust-domain %s (dry run %v): exit %d %q, want 2 naming %s", tc.cluster, tc.td, dry, r.code, r.stderr, tc.with)
			}
		}
		if p, _ := root.Sys().GetPolicyWithContext(ctx, "meshtrust-"+tc.cluster); p != "" {
			t.Errorf("the refused enroll of %s wrote its policy", tc.cluster)
		}
		if s, _ := root.Logical().ReadWithContext(ctx, "auth/approle/role/meshtrust-"+tc.cluster); s != nil {
			t.Errorf("the refused enroll of %s wrote its role", tc.cluster)
		}
	}
	// Re-enrolling a cluster under its own trust domain is no overlap.
	if r := c.run(t, "vault", "enroll", "--cluster", "west", "--trust-domain", "west.mesh", "--auth", "approle", "--dry-run"); r.code != 0 {
		t.Errorf("re-enrolling west under west.mesh: exit %d %q", r.code, r.stderr)
	}
}

// statusNamesOverlaps puts in west a cacerts whose intermediate is
// constrained to "mesh", which covers east's east.mesh: status exits 1 and
// says so for both clusters.
func statusNamesOverlaps(ctx context.Context, t *testing.T, c *cli, west kubernetes.Interface) {
	rogueRoot, rogueInter := testCA(t, "mesh")
	putCacerts(ctx, t, west, istioData(t, rogueInter.Cert, rogueInter.Key, rogueRoot.Cert))
	r := c.run(t, "status", "--context", "east", "--context", "west")
	if r.code != 1 || !strings.Contains(r.stderr, "UNHEALTHY: east, west") {
		t.Errorf("status: exit %d %q, want 1 naming east and west", r.code, r.stderr)
	}
	for _, want := range []string{"trust domain east.mesh falls under trust domain mesh of west", "trust domain mesh contains trust domain east.mesh of east"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("status does not say %q", want)
		}
	}
}
