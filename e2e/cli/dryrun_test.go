package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/meshtrust/meshtrust/e2e/lab"
	"github.com/meshtrust/meshtrust/internal/pki"
)

// planStep is a step of a plan or a result, as -o json prints it.
type planStep struct {
	Name, System, Detail, Before, After string
	Changed                             bool
}

type planJSON struct {
	Operation string
	Changed   bool
	Steps     []planStep
}

// TestDryRun proves --dry-run on the real lab, for every mutating command:
// a dry run changes nothing in Vault or in the cluster (both read back in
// full), and its plan is what the apply then does, step for step. A value
// only the apply can learn (a new root's ID, an AppRole role ID) is planned
// as "(known after apply)".
func TestDryRun(t *testing.T) {
	l := lab.New(t, lab.Options{Clusters: []string{"east"}, NoCertManager: true})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	east := l.Cluster("east")
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := lab.WriteKubeconfig(kubeconfig, map[string]*rest.Config{"east": east.Config}, "east"); err != nil {
		t.Fatal(err)
	}
	c := &cli{env: map[string]string{"VAULT_ADDR": l.Vault.Addr, "VAULT_TOKEN": l.Vault.RootToken, "KUBECONFIG": kubeconfig, "HOME": t.TempDir()}}
	root, err := l.Vault.Client()
	if err != nil {
		t.Fatal(err)
	}
	snapshot := func(t *testing.T) string {
		t.Helper()
		return vaultState(ctx, t, root) + kubeState(ctx, t, east.Clientset)
	}
	// dryRun runs args with --dry-run -o json, checks that nothing changed
	// anywhere, and returns the plan.
	dryRun := func(t *testing.T, args ...string) planJSON {
		t.Helper()
		before := snapshot(t)
		r := c.run(t, append(args, "--dry-run", "-o", "json")...)
		if r.code != 0 {
			t.Fatalf("dry run: exit %d: %s", r.code, r.stderr)
		}
		var p planJSON
		if err := json.Unmarshal([]byte(r.stdout), &p); err != nil {
			t.Fatalf("dry run prints no JSON plan: %v", err)
		}
		if after := snapshot(t); after != before {
			t.Fatalf("the dry run changed Vault or the cluster:\n%s", diffLines(before, after))
		}
		table := c.run(t, append(args, "--dry-run")...)
		if table.code != 0 || !strings.Contains(table.stdout, "dry run, nothing changed") {
			t.Errorf("table dry run: exit %d", table.code)
		}
		return p
	}
	var appRoleSecretID string
	step := func(name string, f func(t *testing.T)) {
		if !t.Run(name, f) {
			t.FailNow()
		}
	}

	step("bootstrap", func(t *testing.T) {
		p := dryRun(t, "vault", "bootstrap")
		if !p.Changed || p.Operation != "bootstrap" {
			t.Fatalf("plan for an empty Vault changes nothing: %+v", p)
		}
		// One plan: the root recorded as the trust anchor, its CRL rebuilt
		// before it expires, and the CRL exchange.
		for _, name := range []string{"root issuer", "trust anchors", "CRL", "mount meshtrust-crl/"} {
			if s := findStep(p, name); s == nil || !s.Changed {
				t.Errorf("the bootstrap plan lacks a change of %s: %+v", name, s)
			}
		}
		r := c.run(t, "vault", "bootstrap", "-o", "json")
		expectApplied(t, p, r)
		expectNothingPlanned(t, dryRun(t, "vault", "bootstrap"))
	})

	step("enroll with kubernetes auth", func(t *testing.T) {
		args := []string{"vault", "enroll", "--cluster", "east", "--trust-domain", "east.mesh", "--context", "east"}
		p := dryRun(t, args...)
		for _, want := range []struct{ name, system string }{
			{"policy meshtrust-east", "vault"}, {"auth mount kubernetes-east/", "vault"},
			{"ServiceAccount kube-system/meshtrust-vault-reviewer", "kubernetes"}, {"ClusterRoleBinding meshtrust-vault-reviewer-kube-system", "kubernetes"},
			{"auth/kubernetes-east/config", "vault+kubernetes"}, {"auth/kubernetes-east/role/meshtrust-east", "vault"},
		} {
			if s := findStep(p, want.name); s == nil || !s.Changed || s.System != want.system || s.After == "" {
				t.Errorf("plan lacks a %s change of %s with before and after: %+v", want.system, want.name, s)
			}
		}
		r := c.run(t, args...)
		expectAppliedTable(t, p, r)
		expectNothingPlanned(t, dryRun(t, args...))
	})

	step("enroll with AppRole, secret ID into the cluster", func(t *testing.T) {
		args := []string{"vault", "enroll", "--cluster", "apps", "--trust-domain", "apps.mesh", "--auth", "approle", "--context", "east", "--secret-name", "meshtrust-vault-approle-apps"}
		p := dryRun(t, args...)
		if s := findStep(p, "AppRole secret ID"); s == nil || !s.Changed || !strings.Contains(s.System, "kubernetes") || !strings.Contains(s.After, "meshtrust-system/meshtrust-vault-approle-apps") {
			t.Errorf("plan lacks storing the secret ID in the cluster: %+v", s)
		}
		r := c.run(t, args...)
		expectAppliedTable(t, p, r)
		sec, err := east.Clientset.CoreV1().Secrets("meshtrust-system").Get(ctx, "meshtrust-vault-approle-apps", metav1.GetOptions{})
		if err != nil {
			t.Fatalf("the apply stored no secret ID: %v", err)
		}
		if appRoleSecretID = string(sec.Data["secret-id"]); appRoleSecretID == "" {
			t.Error("the Secret the apply stored holds no secret-id")
		}
		expectNothingPlanned(t, dryRun(t, args...))
	})

	step("bootstrap a second root", func(t *testing.T) {
		args := []string{"vault", "bootstrap", "--issuer-name", "meshtrust-root-2", "--common-name", "meshtrust root CA 2", "--set-default=false"}
		p := dryRun(t, args...)
		if s := findStep(p, "root issuer"); s == nil || !s.Changed || !strings.Contains(s.After, "(known after apply)") {
			t.Errorf("plan for a new root: %+v", s)
		}
		// As rotate-root adds its new root: both roots become the anchors;
		// the CRL settings and the exchange stay.
		if s := findStep(p, "trust anchors"); s == nil || !s.Changed || !strings.Contains(s.After, "meshtrust-root (") || !strings.Contains(s.After, "meshtrust-root-2 (") {
			t.Errorf("plan for a second root does not record both as trust anchors: %+v", s)
		}
		for _, name := range []string{"CRL", "mount meshtrust-crl/"} {
			if s := findStep(p, name); s == nil || s.Changed {
				t.Errorf("plan for a second root changes %s: %+v", name, s)
			}
		}
		expectApplied(t, p, c.run(t, append(args, "-o", "json")...))
		expectApplied(t, dryRun(t, "vault", "bootstrap", "--issuer-name", "meshtrust-root-2"),
			c.run(t, "vault", "bootstrap", "--issuer-name", "meshtrust-root-2", "-o", "json"))
	})

	step("retire-root: a refusal changes nothing, then the plan is the apply", func(t *testing.T) {
		before := snapshot(t)
		r := c.run(t, "vault", "retire-root", "--issuer-name", "meshtrust-root", "--dry-run")
		if r.code != 1 || !strings.Contains(r.stderr, "meshtrust-east") || !strings.Contains(r.stderr, "nothing changed") {
			t.Errorf("dry run of a retire that policies block: exit %d, %q", r.code, r.stderr)
		}
		if snapshot(t) != before {
			t.Fatal("a refused dry run changed something")
		}
		args := []string{"vault", "retire-root", "--issuer-name", "meshtrust-root", "--force", "--delete-key"}
		p := dryRun(t, args...)
		expectApplied(t, p, c.run(t, append(args, "-o", "json")...))
		expectNothingPlanned(t, dryRun(t, args...))
	})

	step("revoke", func(t *testing.T) {
		_, req := csr(t, eastCN)
		cert, err := signIntermediate(ctx, root, "pki/issuer/meshtrust-root-2/sign-intermediate",
			map[string]any{"csr": req, "common_name": eastCN, "permitted_uri_domains": "east.mesh", "max_path_length": "0"})
		if err != nil {
			t.Fatal(err)
		}
		// The trust domain comes from east's enrol policy.
		args := []string{"vault", "revoke", "--cluster", "east", "--wait", "0s"}
		p := dryRun(t, args...)
		if s := findStep(p, "intermediates of east.mesh"); s == nil || !s.Changed || !strings.Contains(s.After, pki.FormatSerial(cert.SerialNumber)) {
			t.Errorf("plan does not revoke %s: %+v", pki.FormatSerial(cert.SerialNumber), s)
		}
		if s := findStep(p, "CRL of pki/"); s == nil || !s.Changed || !strings.Contains(s.After, pki.FormatSerial(cert.SerialNumber)) {
			t.Errorf("plan does not rebuild the CRL with %s on it: %+v", pki.FormatSerial(cert.SerialNumber), s)
		}
		expectApplied(t, p, c.run(t, append(args, "-o", "json")...))
		expectNothingPlanned(t, dryRun(t, args...))
	})

	step("unenroll with --revoke", func(t *testing.T) {
		// An intermediate of east's, signed under the current root.
		_, req := csr(t, eastCN)
		cert, err := signIntermediate(ctx, root, "pki/issuer/meshtrust-root-2/sign-intermediate",
			map[string]any{"csr": req, "common_name": eastCN, "permitted_uri_domains": "east.mesh", "max_path_length": "0"})
		if err != nil {
			t.Fatal(err)
		}
		args := []string{"vault", "unenroll", "--cluster", "east", "--trust-domain", "east.mesh", "--revoke"}
		p := dryRun(t, args...)
		if s := findStep(p, "intermediates of east.mesh"); s == nil || !s.Changed || !strings.Contains(s.After, pki.FormatSerial(cert.SerialNumber)) {
			t.Errorf("plan does not revoke %s: %+v", pki.FormatSerial(cert.SerialNumber), s)
		}
		expectApplied(t, p, c.run(t, append(args, "-o", "json")...))
		expectNothingPlanned(t, dryRun(t, args...))
	})

	step("plans print no secret", func(t *testing.T) {
		// The reviewer token enrol mints is a JWT, which leaks looks for.
		if found := leaks(c.printed(), l.Vault.RootToken, appRoleSecretID); len(found) > 0 {
			t.Errorf("a plan or a result printed %s", strings.Join(found, ", "))
		}
	})
}

func findStep(p planJSON, name string) *planStep {
	for i := range p.Steps {
		if p.Steps[i].Name == name {
			return &p.Steps[i]
		}
	}
	return nil
}

// expectApplied checks that a -o json apply did what the plan said, step
// for step.
func expectApplied(t *testing.T, p planJSON, r result) {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("apply: exit %d: %s", r.code, r.stderr)
	}
	var res planJSON
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
		t.Fatalf("apply prints no JSON result: %v", err)
	}
	if len(res.Steps) != len(p.Steps) || res.Changed != p.Changed {
		t.Fatalf("the apply ran %d steps (changed %v), the plan listed %d (changed %v)", len(res.Steps), res.Changed, len(p.Steps), p.Changed)
	}
	for i, want := range p.Steps {
		got := res.Steps[i]
		if got.Name != want.Name || got.System != want.System || got.Changed != want.Changed || got.Before != want.Before || !plannedValue(want.After, got.After) {
			t.Errorf("step %d: planned %+v, applied %+v", i, want, got)
		}
	}
}

// expectAppliedTable is expectApplied for enroll, whose standard output is
// the manifests: its steps are read from the table on standard error.
func expectAppliedTable(t *testing.T, p planJSON, r result) {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("apply: exit %d", r.code)
	}
	var lines []string
	for _, l := range strings.Split(r.stderr, "\n") {
		if strings.HasPrefix(l, "  ") {
			lines = append(lines, l)
		}
	}
	if len(lines) != len(p.Steps) {
		t.Fatalf("the apply printed %d steps, the plan listed %d", len(lines), len(p.Steps))
	}
	for i, want := range p.Steps {
		mark := "unchanged"
		if want.Changed {
			mark = "CHANGED"
		}
		if !regexp.MustCompile(`^  ` + regexp.QuoteMeta(want.Name) + `\s+` + mark + `\s`).MatchString(lines[i]) {
			t.Errorf("step %d: planned %s %s, applied %q", i, want.Name, mark, lines[i])
		}
	}
}

// plannedValue reports whether applied is what planned says, where
// "(known after apply)" stands for any value.
func plannedValue(planned, applied string) bool {
	if !strings.Contains(planned, "(known after apply)") {
		return planned == applied
	}
	pattern := "^" + strings.ReplaceAll(regexp.QuoteMeta(planned), regexp.QuoteMeta("(known after apply)"), ".+") + "$"
	return regexp.MustCompile(pattern).MatchString(applied) && !strings.Contains(applied, "(known after apply)")
}

func expectNothingPlanned(t *testing.T, p planJSON) {
	t.Helper()
	for _, s := range p.Steps {
		if s.Changed {
			t.Errorf("a second run would change %s: %s", s.Name, s.Detail)
		}
	}
	if p.Changed {
		t.Error("a second run's plan changes something")
	}
}

// vaultState reads back everything the vault commands touch: secret
// engines and auth methods with their settings, every policy, every PKI
// mount's issuers, keys, configuration and certificates (with revocation),
// every auth mount's roles and configuration.
func vaultState(ctx context.Context, t *testing.T, vc *vaultapi.Client) string {
	t.Helper()
	var b strings.Builder
	put := func(what string, v any) {
		j, _ := json.Marshal(v)
		fmt.Fprintf(&b, "%s = %s\n", what, j)
	}
	read := func(path string) {
		s, err := vc.Logical().ReadWithContext(ctx, path)
		if err != nil {
			put(path, "error: "+err.Error())
			return
		}
		if s == nil {
			put(path, nil)
			return
		}
		put(path, s.Data)
	}
	list := func(path string) []string {
		s, err := vc.Logical().ListWithContext(ctx, path)
		if err != nil || s == nil {
			put(path, nil)
			return nil
		}
		var keys []string
		for _, k := range s.Data["keys"].([]any) {
			keys = append(keys, k.(string))
		}
		sort.Strings(keys)
		put(path, keys)
		return keys
	}
	mounts, err := vc.Sys().ListMountsWithContext(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range sortedKeys(mounts) {
		m := mounts[name]
		put("mount "+name, []any{m.Type, m.Description, m.Config.MaxLeaseTTL})
		if m.Type != "pki" {
			continue
		}
		mount := strings.TrimSuffix(name, "/")
		for _, id := range list(mount + "/issuers") {
			read(mount + "/issuer/" + id)
		}
		for _, id := range list(mount + "/keys") {
			read(mount + "/key/" + id)
		}
		for _, p := range []string{"config/issuers", "config/urls", "config/cluster"} {
			read(mount + "/" + p)
		}
		for _, serial := range list(mount + "/certs") {
			read(mount + "/cert/" + serial)
		}
	}
	auths, err := vc.Sys().ListAuthWithContext(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range sortedKeys(auths) {
		a := auths[name]
		put("auth "+name, []any{a.Type, a.Description})
		mount := "auth/" + strings.TrimSuffix(name, "/")
		for _, role := range list(mount + "/role") {
			read(mount + "/role/" + role)
		}
		if a.Type == "kubernetes" {
			read(mount + "/config")
		}
	}
	policies, err := vc.Sys().ListPoliciesWithContext(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(policies)
	for _, p := range policies {
		text, _ := vc.Sys().GetPolicyWithContext(ctx, p)
		put("policy "+p, text)
	}
	return b.String()
}

// kubeState lists what enroll may create in a cluster: namespaces,
// ServiceAccounts, ClusterRoleBindings and Secrets, each with its
// resourceVersion, so that any write shows.
func kubeState(ctx context.Context, t *testing.T, cs kubernetes.Interface) string {
	t.Helper()
	var b strings.Builder
	nss, err := cs.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nss.Items {
		fmt.Fprintf(&b, "namespace %s %s\n", n.Name, n.ResourceVersion)
	}
	sas, err := cs.CoreV1().ServiceAccounts("").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range sas.Items {
		fmt.Fprintf(&b, "serviceaccount %s/%s %s\n", s.Namespace, s.Name, s.ResourceVersion)
	}
	crbs, err := cs.RbacV1().ClusterRoleBindings().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range crbs.Items {
		fmt.Fprintf(&b, "clusterrolebinding %s %s\n", c.Name, c.ResourceVersion)
	}
	secrets, err := cs.CoreV1().Secrets("").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range secrets.Items {
		fmt.Fprintf(&b, "secret %s/%s %s\n", s.Namespace, s.Name, s.ResourceVersion)
	}
	return b.String()
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func diffLines(a, b string) string {
	in := map[string]bool{}
	for _, l := range strings.Split(a, "\n") {
		in[l] = true
	}
	var out []string
	for _, l := range strings.Split(b, "\n") {
		if !in[l] {
			out = append(out, "+ "+l)
		}
	}
	return strings.Join(out, "\n")
}
