package cli

import (
	"context"
	"strings"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/meshtrust/meshtrust/e2e/lab"
	"github.com/meshtrust/meshtrust/internal/vaultcontract"
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
	r := c.runEnv(t, withoutVault, "status", "--context", "east", "--context", "west")
	if r.code != 1 || !strings.Contains(r.stderr, "UNHEALTHY: east, west") {
		t.Errorf("status: exit %d %q, want 1 naming east and west", r.code, r.stderr)
	}
	for _, want := range []string{"trust domain east.mesh falls under trust domain mesh of west", "trust domain mesh contains trust domain east.mesh of east"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("status does not say %q", want)
		}
	}
}

// controllerLogin logs in to east's mount as meshtrust's controller does,
// with its ServiceAccount's token, and returns the error.
func controllerLogin(ctx context.Context, t *testing.T, east *lab.Cluster, root *vaultapi.Client) error {
	t.Helper()
	jwt, err := east.ServiceAccountToken(ctx, "meshtrust-system", "meshtrust-controller", []string{"vault://meshtrust-vault"}, 10*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	_, err = root.Logical().WriteWithContext(ctx, "auth/kubernetes-east/login", map[string]any{"role": "meshtrust-east", "jwt": jwt})
	return err
}

// reviewerTokenNeverLapsesSilently runs with east enrolled with the
// defaults. The reviewer token Vault stores has its expiry recorded on its
// ServiceAccount; status shows it and warns within 30 days of it; enroll
// then mints a new one (as it does when the expiry is unknown, from an
// enrol before it was recorded), and only then.
func reviewerTokenNeverLapsesSilently(ctx context.Context, t *testing.T, c *cli, east *lab.Cluster, root *vaultapi.Client) {
	const reviewer = "kube-system/meshtrust-vault-reviewer"
	reviewers := east.Clientset.CoreV1().ServiceAccounts("kube-system")
	enroll := func(extra ...string) result {
		t.Helper()
		r := c.run(t, append([]string{"vault", "enroll", "--cluster", "east", "--trust-domain", "east.mesh", "--context", "east"}, extra...)...)
		if r.code != 0 {
			t.Fatalf("enroll %v: exit %d", extra, r.code)
		}
		if err := controllerLogin(ctx, t, east, root); err != nil {
			t.Errorf("login after enroll %v: %v", extra, err)
		}
		return r
	}
	expiresIn := func() time.Duration {
		t.Helper()
		sa, err := reviewers.Get(ctx, "meshtrust-vault-reviewer", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if sa.Annotations[vaultcontract.ReviewerTokenMountAnnotation] != "kubernetes-east" {
			t.Errorf("reviewer ServiceAccount annotations %v do not name auth/kubernetes-east", sa.Annotations)
		}
		exp, err := time.Parse(time.RFC3339, sa.Annotations[vaultcontract.ReviewerTokenExpiresAnnotation])
		if err != nil {
			t.Fatalf("reviewer token expiry not recorded: %v", err)
		}
		return time.Until(exp)
	}
	s, err := root.Logical().ReadWithContext(ctx, "auth/kubernetes-east/config")
	if err != nil || s == nil || s.Data["token_reviewer_jwt_set"] != true {
		t.Fatalf("auth/kubernetes-east/config stores no reviewer token: %v", err)
	}
	if left := expiresIn(); left < 8759*time.Hour || left > 8761*time.Hour {
		t.Errorf("recorded expiry %s away, want the 8760h asked for", left)
	}
	if r := enroll(); !strings.Contains(r.stderr, "Nothing changed") {
		t.Error("enroll re-minted a reviewer token far from its expiry")
	}

	// A token 700h from its expiry, inside the 30-day window.
	enroll("--reviewer-token-ttl", "700h", "--refresh-reviewer-token")
	if left := expiresIn(); left < 699*time.Hour || left > 701*time.Hour {
		t.Errorf("recorded expiry %s away, want 700h", left)
	}
	r := c.runEnv(t, withoutVault, "status", "--context", "east")
	for _, want := range []string{"auth/kubernetes-east stores a token of ServiceAccount " + reviewer,
		"east: the Vault reviewer token stored in auth/kubernetes-east (ServiceAccount " + reviewer + ") expires in 29d"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("status does not say %q", want)
		}
	}
	if r.code != 1 {
		t.Errorf("status with a reviewer token due for renewal: exit %d, want 1", r.code)
	}
	if r := enroll(); !strings.Contains(r.stderr, "since the stored one expires") {
		t.Error("enroll did not renew a reviewer token within 30 days of its expiry")
	}
	if left := expiresIn(); left < 8759*time.Hour {
		t.Errorf("renewed reviewer token expires %s away, want a year", left)
	}
	if r := c.runEnv(t, withoutVault, "status", "--context", "east"); r.code != 0 || strings.Contains(r.stdout, "reviewer token stored") {
		t.Errorf("status after the renewal: exit %d, want 0 and no warning", r.code)
	}

	// An enrol from before expiries were recorded: enroll renews.
	if _, err := reviewers.Patch(ctx, "meshtrust-vault-reviewer", types.JSONPatchType,
		[]byte(`[{"op":"remove","path":"/metadata/annotations/meshtrust.io~1vault-reviewer-token-expires"}]`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	if r := enroll(); strings.Contains(r.stderr, "Nothing changed") {
		t.Error("enroll kept a reviewer token whose expiry is unknown")
	}
	if left := expiresIn(); left < 8759*time.Hour {
		t.Errorf("reviewer token expires %s away after the renewal, want a year", left)
	}
}

// clientJWTNeedsAPIServerTokens is why enrol stores a reviewer token: a
// mount without one makes Vault call TokenReview with the logging-in
// token itself, which works only for a token the API server accepts as a
// credential. The controller's Vault-audience token is refused even though
// its ServiceAccount may create TokenReviews; a token for the API server's
// own audience (which the issuer never sends Vault) logs in.
func clientJWTNeedsAPIServerTokens(ctx context.Context, t *testing.T, east *lab.Cluster, root *vaultapi.Client) {
	const mount = "kubernetes-probe"
	if err := root.Sys().EnableAuthWithOptionsWithContext(ctx, mount, &vaultapi.EnableAuthOptions{Type: "kubernetes"}); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = root.Sys().DisableAuthWithContext(ctx, mount) }()
	if _, err := root.Logical().WriteWithContext(ctx, "auth/"+mount+"/config", map[string]any{
		"kubernetes_host": east.Host, "kubernetes_ca_cert": string(east.CAData), "disable_local_ca_jwt": true,
	}); err != nil {
		t.Fatal(err)
	}
	binding := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "probe-controller-auth-delegator"},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "system:auth-delegator"},
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: "meshtrust-system", Name: "meshtrust-controller"}}}
	if _, err := east.Clientset.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = east.Clientset.RbacV1().ClusterRoleBindings().Delete(ctx, binding.Name, metav1.DeleteOptions{})
	}()
	for role, aud := range map[string]string{"vault-audience": "vault://meshtrust-vault", "api-audience": ""} {
		if _, err := root.Logical().WriteWithContext(ctx, "auth/"+mount+"/role/"+role, map[string]any{
			"bound_service_account_names": "meshtrust-controller", "bound_service_account_namespaces": "meshtrust-system", "audience": aud,
		}); err != nil {
			t.Fatal(err)
		}
	}
	login := func(role string, audiences []string) error {
		jwt, err := east.ServiceAccountToken(ctx, "meshtrust-system", "meshtrust-controller", audiences, 10*time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		_, err = root.Logical().WriteWithContext(ctx, "auth/"+mount+"/login", map[string]any{"role": role, "jwt": jwt})
		return err
	}
	if err := login("vault-audience", []string{"vault://meshtrust-vault"}); err == nil {
		t.Error("a Vault-audience token logged in through a mount without a reviewer token")
	}
	lab.Eventually(t, 30*time.Second, "an API-server-audience token to log in", func(ctx context.Context) error { return login("api-audience", nil) })
}

// unenrollRefusesWhatItCannotSearch runs unenroll for west with a token
// that may not list east's kubernetes roles: unenroll cannot know that
// nothing of west is there, so it refuses (exit 1), names the mount, and
// changes nothing.
func unenrollRefusesWhatItCannotSearch(ctx context.Context, t *testing.T, c *cli, root *vaultapi.Client, westLogin map[string]any) string {
	if err := root.Sys().PutPolicyWithContext(ctx, "unenroller-blind", `
path "sys/auth" { capabilities = ["read"] }
path "sys/policies/acl/*" { capabilities = ["read", "delete"] }
path "auth/approle/role" { capabilities = ["list"] }
path "auth/approle/role/*" { capabilities = ["read", "list", "delete"] }
`); err != nil {
		t.Fatal(err)
	}
	tok, err := root.Auth().Token().CreateWithContext(ctx, &vaultapi.TokenCreateRequest{Policies: []string{"unenroller-blind"}, TTL: "10m"})
	if err != nil {
		t.Fatal(err)
	}
	r := c.runEnv(t, map[string]string{"VAULT_TOKEN": tok.Auth.ClientToken}, "vault", "unenroll", "--cluster", "west")
	if r.code != 1 || !strings.Contains(r.stderr, "refusing to unenroll cluster west (nothing changed)") || !strings.Contains(r.stderr, "auth/kubernetes-east/ could not be searched") {
		t.Errorf("unenroll west, blind to auth/kubernetes-east/: exit %d %q, want 1 naming that mount", r.code, r.stderr)
	}
	if s, err := root.Logical().ReadWithContext(ctx, "auth/approle/role/meshtrust-west"); err != nil || s == nil {
		t.Errorf("the refused unenroll deleted west's role: %v", err)
	}
	if _, err := root.Logical().WriteWithContext(ctx, "auth/approle/login", westLogin); err != nil {
		t.Errorf("west can no longer log in after a refused unenroll: %v", err)
	}
	return tok.Auth.ClientToken
}

// unenrollFindsAppRole is the review's case: west was enrolled with
// --auth approle, and is unenrolled without saying so. Its role goes, with
// its never-expiring secret ID, which no longer logs in, not even once the
// name is enrolled again; the shared AppRole mount and north's role in it
// stay.
func unenrollFindsAppRole(ctx context.Context, t *testing.T, c *cli, root *vaultapi.Client, westLogin map[string]any) {
	northIDs := secretIDCount(ctx, t, root, "meshtrust-north")
	entry := vaultcontract.CRLExchangePath("west.mesh")
	if !hasCRLEntry(ctx, t, root, "west.mesh") {
		t.Fatalf("enroll made no CRL exchange entry %s for west", entry)
	}
	r := c.run(t, "vault", "unenroll", "--cluster", "west")
	if r.code != 0 || !strings.Contains(r.stdout, "auth/approle/role/meshtrust-west") || !strings.Contains(r.stdout, "secret IDs") {
		t.Fatalf("unenroll west: exit %d, want 0 deleting auth/approle/role/meshtrust-west and its secret IDs", r.code)
	}
	// The trust domain naming the entry comes from west's policy.
	if !strings.Contains(r.stdout, entry) || hasCRLEntry(ctx, t, root, "west.mesh") {
		t.Errorf("unenroll west left its CRL exchange entry %s, which makes the other clusters carry its CRLs", entry)
	}
	if s, _ := root.Logical().ReadWithContext(ctx, "auth/approle/role/meshtrust-west"); s != nil {
		t.Error("west's AppRole role is still there")
	}
	if p, _ := root.Sys().GetPolicyWithContext(ctx, "meshtrust-west"); p != "" {
		t.Error("west's policy is still there")
	}
	if _, err := root.Logical().WriteWithContext(ctx, "auth/approle/login", westLogin); err == nil {
		t.Error("west's secret ID still logs in")
	}
	auths, err := root.Sys().ListAuthWithContext(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := auths["approle/"]; !ok {
		t.Error("unenroll disabled the shared AppRole mount")
	}
	if _, ok := auths["kubernetes-east/"]; !ok {
		t.Error("unenroll of west disabled east's mount")
	}
	if n := secretIDCount(ctx, t, root, "meshtrust-north"); n != northIDs {
		t.Errorf("north's role has %d secret IDs after west's unenroll, had %d", n, northIDs)
	}
	if again := c.run(t, "vault", "unenroll", "--cluster", "west"); again.code != 0 || !strings.Contains(again.stdout, "Nothing changed") {
		t.Errorf("second unenroll of west changed something: exit %d", again.code)
	}

	// Enrolled again under the same name: the old secret ID gives it no
	// rights, with the old role ID or the new one.
	if r := c.run(t, "vault", "enroll", "--cluster", "west", "--trust-domain", "west.mesh", "--auth", "approle"); r.code != 0 {
		t.Fatalf("re-enroll west: exit %d", r.code)
	}
	s, err := root.Logical().ReadWithContext(ctx, "auth/approle/role/meshtrust-west/role-id")
	if err != nil || s == nil {
		t.Fatal(err)
	}
	for _, roleID := range []any{westLogin["role_id"], s.Data["role_id"]} {
		if _, err := root.Logical().WriteWithContext(ctx, "auth/approle/login", map[string]any{"role_id": roleID, "secret_id": westLogin["secret_id"]}); err == nil {
			t.Error("the old secret ID logs in to the re-enrolled west")
		}
	}
}

// statusChecksIstioMesh writes Istio's mesh ConfigMap into east, as an
// Istio install does, and reads status: a trustDomain other than east's
// intermediate's constraint is a problem naming both; the right one without
// west among trustDomainAliases is a warning; with it, healthy. It removes
// the ConfigMaps at the end.
func statusChecksIstioMesh(ctx context.Context, t *testing.T, c *cli, east, west *lab.Cluster) {
	mesh := func(cs *lab.Cluster, yaml string) {
		t.Helper()
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "istio-system", Name: "istio"}, Data: map[string]string{"mesh": yaml}}
		cms := cs.Clientset.CoreV1().ConfigMaps("istio-system")
		if _, err := cms.Update(ctx, cm, metav1.UpdateOptions{}); apierrors.IsNotFound(err) {
			_, err = cms.Create(ctx, cm, metav1.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
		} else if err != nil {
			t.Fatal(err)
		}
	}
	defer func() {
		for _, cs := range []*lab.Cluster{east, west} {
			_ = cs.Clientset.CoreV1().ConfigMaps("istio-system").Delete(ctx, "istio", metav1.DeleteOptions{})
		}
	}()
	mesh(east, "trustDomain: kind2\ndefaultConfig:\n  discoveryAddress: istiod.istio-system.svc:15012\n")
	mesh(west, "trustDomain: west.mesh\ntrustDomainAliases: [east.mesh]\n")
	r := c.runEnv(t, withoutVault, "status", "--context", "east", "--context", "west")
	if r.code != 1 || strings.TrimSpace(r.stderr) != "meshtrust: UNHEALTHY: east" ||
		!strings.Contains(r.stdout, `Istio's meshConfig.trustDomain is "kind2" (ConfigMap istio-system/istio), but the intermediate in cacerts is constrained to "east.mesh"`) {
		t.Errorf("status with a wrong meshConfig.trustDomain in east: exit %d %q, want 1 naming east, kind2 and east.mesh", r.code, r.stderr)
	}
	mesh(east, "trustDomain: east.mesh\n")
	r = c.runEnv(t, withoutVault, "status", "--context", "east", "--context", "west")
	if r.code != 1 || !strings.Contains(r.stdout, "east: trust domain west.mesh of federated peer west is not in Istio's meshConfig.trustDomainAliases (istio-system/istio: none)") ||
		!strings.Contains(r.stdout, "UNHEALTHY: 1 warning(s)") {
		t.Errorf("status with west missing from east's trustDomainAliases: exit %d, want 1 and the warning", r.code)
	}
	mesh(east, "trustDomain: east.mesh\ntrustDomainAliases: [west.mesh]\n")
	if r := c.runEnv(t, withoutVault, "status", "--context", "east", "--context", "west"); r.code != 0 || !strings.Contains(r.stdout, "istio mesh:       trust domain east.mesh, aliases west.mesh (istio-system/istio)") {
		t.Errorf("status with Istio's settings right: exit %d, want 0", r.code)
	}
}

// hasCRLEntry reports whether the cluster of trustDomain has an entry in
// Vault's CRL exchange.
func hasCRLEntry(ctx context.Context, t *testing.T, root *vaultapi.Client, trustDomain string) bool {
	t.Helper()
	s, err := root.Logical().ReadWithContext(ctx, vaultcontract.CRLExchangePath(trustDomain))
	if err != nil {
		t.Fatalf("reading %s: %v", vaultcontract.CRLExchangePath(trustDomain), err)
	}
	return s != nil
}
