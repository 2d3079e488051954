package cli

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/meshtrust/meshtrust/internal/pki"
)

// The checks below are the CLI refusing to damage what it does not own, or
// undoing what it changed when it fails. TestCLI runs them as steps, in the
// state its story has reached.

// maxLeaseTTL is the mount's max lease TTL as Vault reports it.
func maxLeaseTTL(ctx context.Context, t *testing.T, root *vaultapi.Client, mount string) time.Duration {
	t.Helper()
	cfg, err := root.Sys().MountConfigWithContext(ctx, mount)
	if err != nil {
		t.Fatalf("reading the tuning of %s/: %v", mount, err)
	}
	return time.Duration(cfg.MaxLeaseTTL) * time.Second
}

// failedGenerationKeepsMaxTTL makes Vault refuse the root (an RSA key of 123
// bits) after bootstrap raised the mount's max TTL to the root's: the TTL
// must be back at the intermediates' cap, or clusters could get 10-year
// intermediates.
func failedGenerationKeepsMaxTTL(ctx context.Context, t *testing.T, c *cli, root *vaultapi.Client) {
	r := c.run(t, "vault", "bootstrap", "--issuer-name", "r3", "--key-type", "rsa", "--key-bits", "123")
	if r.code != 2 || !strings.Contains(r.stderr, "generating the root") {
		t.Errorf("bootstrap with a bad key size: exit %d %q, want 2 and a failed generation", r.code, r.stderr)
	}
	if got := maxLeaseTTL(ctx, t, root, "pki"); got != 2160*time.Hour {
		t.Errorf("pki/ max lease TTL is %s after the failed bootstrap, want 2160h", got)
	}
	if s, err := root.Logical().ReadWithContext(ctx, "pki/issuer/r3"); err == nil && s != nil {
		t.Error("the failed bootstrap left an issuer r3")
	}

	// A mount the failed bootstrap creates itself.
	r = c.run(t, "vault", "bootstrap", "--mount", "pki-failed", "--issuer-name", "r3", "--key-type", "rsa", "--key-bits", "123",
		"--ttl", "1000h", "--max-intermediate-ttl", "100h")
	if r.code != 2 {
		t.Errorf("bootstrap of a new mount with a bad key size: exit %d, want 2", r.code)
	}
	if got := maxLeaseTTL(ctx, t, root, "pki-failed"); got != 100*time.Hour {
		t.Errorf("pki-failed/ max lease TTL is %s after the failed bootstrap, want the --max-intermediate-ttl 100h", got)
	}
}

// importNeverRenames imports file's root again under another name: the
// issuer policies are pinned to must keep its name and settings.
func importNeverRenames(ctx context.Context, t *testing.T, c *cli, root *vaultapi.Client, file string) {
	r := c.run(t, "vault", "bootstrap", "--mount", "pki-imported", "--issuer-name", "other-name", "--import-pem", file)
	if r.code != 2 || !strings.Contains(r.stderr, `already issuer "imported-root"`) || !strings.Contains(r.stderr, "--adopt-issuer imported-root") {
		t.Errorf("re-import under another name: exit %d %q, want 2 pointing to --adopt-issuer imported-root", r.code, r.stderr)
	}
	if s, err := root.Logical().ReadWithContext(ctx, "pki-imported/issuer/imported-root"); err != nil || s == nil {
		t.Errorf("issuer imported-root is gone: %v", err)
	}
	if s, err := root.Logical().ReadWithContext(ctx, "pki-imported/issuer/other-name"); err == nil && s != nil {
		t.Error("the root was renamed to other-name")
	}

	// An issuer imported without a name (an import that stopped before
	// naming it) is named, and keeps its other settings.
	bundle, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := root.Sys().MountWithContext(ctx, "pki-unnamed", &vaultapi.MountInput{Type: "pki"}); err != nil {
		t.Fatal(err)
	}
	s, err := root.Logical().WriteWithContext(ctx, "pki-unnamed/issuers/import/bundle", map[string]any{"pem_bundle": string(bundle)})
	if err != nil {
		t.Fatal(err)
	}
	id := stringsOf(s.Data["imported_issuers"])[0]
	if _, err := root.Logical().JSONMergePatch(ctx, "pki-unnamed/issuer/"+id, map[string]any{"leaf_not_after_behavior": "truncate"}); err != nil {
		t.Fatal(err)
	}
	r = c.run(t, "vault", "bootstrap", "--mount", "pki-unnamed", "--issuer-name", "named-root", "--import-pem", file)
	if r.code != 0 {
		t.Fatalf("naming an unnamed imported root: exit %d", r.code)
	}
	s, err = root.Logical().ReadWithContext(ctx, "pki-unnamed/issuer/named-root")
	if err != nil || s == nil || s.Data["issuer_id"] != id || s.Data["leaf_not_after_behavior"] != "truncate" {
		t.Errorf("issuer named-root: %v, want issuer %s with its leaf_not_after_behavior kept (%v)", err, id, s)
	}
}

// enrollRefusesForeignMounts runs enroll against kubernetes mounts that are
// not the cluster's: east's own, and one someone else configured. Neither
// may be reconfigured, and a refused enroll writes nothing.
func enrollRefusesForeignMounts(ctx context.Context, t *testing.T, c *cli, root *vaultapi.Client, eastHost string) {
	auths, err := root.Sys().ListAuthWithContext(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if m := auths["kubernetes-east/"]; m == nil || m.Description != "meshtrust: cluster east" {
		t.Fatalf("enroll did not mark kubernetes-east/ as east's: %+v", m)
	}
	r := c.run(t, "vault", "enroll", "--cluster", "west", "--trust-domain", "west.mesh", "--context", "west", "--auth-mount", "kubernetes-east")
	if r.code != 2 || !strings.Contains(r.stderr, "refusing to reconfigure auth/kubernetes-east/") || !strings.Contains(r.stderr, "cluster west") {
		t.Errorf("enroll west into east's mount: exit %d %q, want 2 and a refusal", r.code, r.stderr)
	}
	if host := authConfigHost(ctx, t, root, "kubernetes-east"); host != eastHost {
		t.Errorf("kubernetes-east/ now points at %q, want east's %s", host, eastHost)
	}
	if p, _ := root.Sys().GetPolicyWithContext(ctx, "meshtrust-west"); p != "" {
		t.Error("the refused enroll wrote policy meshtrust-west")
	}

	const foreignHost = "https://foreign.example:6443"
	if err := root.Sys().EnableAuthWithOptionsWithContext(ctx, "kubernetes-foreign", &vaultapi.EnableAuthOptions{Type: "kubernetes", Description: "team x"}); err != nil {
		t.Fatal(err)
	}
	if _, err := root.Logical().WriteWithContext(ctx, "auth/kubernetes-foreign/config", map[string]any{"kubernetes_host": foreignHost, "disable_local_ca_jwt": true}); err != nil {
		t.Fatal(err)
	}
	r = c.run(t, "vault", "enroll", "--cluster", "east", "--trust-domain", "east.mesh", "--context", "east", "--auth-mount", "kubernetes-foreign")
	if r.code != 2 || !strings.Contains(r.stderr, `refusing to reconfigure auth/kubernetes-foreign/: its description is "team x"`) {
		t.Errorf("enroll into a foreign mount: exit %d %q, want 2 and a refusal", r.code, r.stderr)
	}
	if host := authConfigHost(ctx, t, root, "kubernetes-foreign"); host != foreignHost {
		t.Errorf("kubernetes-foreign/ now points at %q, want %s", host, foreignHost)
	}
}

func authConfigHost(ctx context.Context, t *testing.T, root *vaultapi.Client, mount string) string {
	t.Helper()
	s, err := root.Logical().ReadWithContext(ctx, "auth/"+mount+"/config")
	if err != nil || s == nil {
		t.Fatalf("reading auth/%s/config: %v", mount, err)
	}
	host, _ := s.Data["kubernetes_host"].(string)
	return host
}

// secretIDFileKept enrolls north with --secret-id-file over a stale,
// world-readable file, and again: the file ends 0600 and the role has one
// secret ID, whatever the number of runs. It returns the secret IDs seen.
func secretIDFileKept(ctx context.Context, t *testing.T, c *cli, root *vaultapi.Client) []string {
	file := filepath.Join(t.TempDir(), "north.secret-id")
	if err := os.WriteFile(file, []byte("stale-secret-id\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(file, 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"vault", "enroll", "--cluster", "north", "--trust-domain", "north.mesh", "--auth", "approle", "--secret-id-file", file}
	var seen []string
	enroll := func(wantChanged bool) string {
		t.Helper()
		r := c.run(t, args...)
		if r.code != 0 || strings.Contains(r.stderr, "Nothing changed") == wantChanged {
			t.Fatalf("enroll north: exit %d, want 0 and changed=%v", r.code, wantChanged)
		}
		fi, err := os.Stat(file)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("--secret-id-file has mode %v, want 0600", fi.Mode().Perm())
		}
		b, _ := os.ReadFile(file)
		id := string(b)
		seen = append(seen, id)
		if n := secretIDCount(ctx, t, root, "meshtrust-north"); n != 1 {
			t.Errorf("role meshtrust-north has %d secret IDs, want 1", n)
		}
		return id
	}
	first := enroll(true)
	if first == "stale-secret-id\n" {
		t.Fatal("the stale secret ID was kept")
	}
	if again := enroll(false); again != first {
		t.Error("a second enroll replaced a secret ID Vault still accepts")
	}
	if err := os.Chmod(file, 0o644); err != nil {
		t.Fatal(err)
	}
	if again := enroll(true); again != first {
		t.Error("tightening the mode replaced the secret ID")
	}
	if _, err := root.Logical().WriteWithContext(ctx, "auth/approle/role/meshtrust-north/secret-id/destroy", map[string]any{"secret_id": first}); err != nil {
		t.Fatal(err)
	}
	if next := enroll(true); next == first {
		t.Error("a destroyed secret ID was kept")
	}
	return seen
}

func secretIDCount(ctx context.Context, t *testing.T, root *vaultapi.Client, role string) int {
	t.Helper()
	s, err := root.Logical().ListWithContext(ctx, "auth/approle/role/"+role+"/secret-id")
	if err != nil {
		t.Fatal(err)
	}
	if s == nil {
		return 0
	}
	return len(stringsOf(s.Data["keys"]))
}

func stringsOf(v any) []string {
	raw, _ := v.([]any)
	out := make([]string, 0, len(raw))
	for _, e := range raw {
		if s, ok := e.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

// staleExport puts files of an older layout where status --export writes,
// which the export must remove.
func staleExport(t *testing.T, dir string) []string {
	t.Helper()
	stale := []string{filepath.Join(dir, "west", pki.CAKeyKey), filepath.Join(dir, "east", "old-root.pem")}
	for _, f := range stale {
		if err := os.MkdirAll(filepath.Dir(f), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f, []byte("stale"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return stale
}
