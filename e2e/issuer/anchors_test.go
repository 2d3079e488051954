package issuer_test

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	vaultapi "github.com/hashicorp/vault/api"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"

	cliapp "github.com/meshtrust/meshtrust/cmd/meshtrust/app"
	"github.com/meshtrust/meshtrust/internal/pki"
	"github.com/meshtrust/meshtrust/internal/pki/pkitest"
	"github.com/meshtrust/meshtrust/internal/vaultadmin"
	"github.com/meshtrust/meshtrust/issuer/api/v1alpha1"
	"github.com/meshtrust/meshtrust/issuer/vault"
)

// TestTrustAnchors proves on the real Vault that ca.crt lists the roots
// `meshtrust vault bootstrap` made and nothing else: a self-signed CA
// imported into the mount by other means (with its key, so Vault could even
// sign with it) never reaches ca.crt, while a second root bootstrap adds
// does, for clusters on either root, as a root rotation needs; once
// retire-root deletes the old root, ca.crt holds the new one alone. The CRLs
// follow the same anchors: the issuer's Vault client (which hands the
// syncer the CRLs for ca-crl.pem) and the CLI's (status, revoke) read the
// CRLs of exactly those roots, never of a stray.
func TestTrustAnchors(t *testing.T) {
	e := getEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const mount = "pki-anchors"
	cli := func(args ...string) string {
		t.Helper()
		var out, errOut bytes.Buffer
		env := map[string]string{"VAULT_ADDR": e.lab.Vault.Addr, "VAULT_TOKEN": e.lab.Vault.RootToken, "HOME": t.TempDir()}
		code := cliapp.Main(ctx, append(args, "--mount", mount), cliapp.Streams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut},
			cliapp.WithGetenv(func(k string) string { return env[k] }))
		if code != 0 {
			t.Fatalf("meshtrust %s: exit %d: %s%s", strings.Join(args, " "), code, out.String(), errOut.String())
		}
		return out.String()
	}
	cli("vault", "bootstrap", "--issuer-name", "anchors-1", "--common-name", "anchors root 1")
	root1 := e.issuerCert(ctx, t, mount, "anchors-1")

	// The strays: an unrelated self-signed CA with its key, and one without.
	for i, withKey := range []bool{true, false} {
		stray := pkitest.New(t, time.Now(), pkitest.Spec{CN: fmt.Sprintf("stray root %d", i), NotAfter: time.Now().Add(24 * time.Hour)}, nil)
		bundle := stray.PEM()
		if withKey {
			bundle = append(bundle, stray.KeyPEM(t)...)
		}
		if _, err := e.vault.Logical().WriteWithContext(ctx, mount+"/issuers/import/bundle", map[string]any{"pem_bundle": string(bundle)}); err != nil {
			t.Fatal(err)
		}
	}
	if ids, err := e.vault.Logical().ListWithContext(ctx, mount+"/issuers"); err != nil || ids == nil || len(ids.Data["keys"].([]any)) != 3 {
		t.Fatalf("the mount does not hold the root and both strays: %v %v", ids, err)
	}
	if _, err := e.vault.Logical().WriteWithContext(ctx, mount+"/roles/"+leafRole, map[string]any{
		"allow_any_name": true, "enforce_hostnames": false, "require_cn": false, "allowed_uri_sans": "spiffe://" + trustDomain + "/*",
		"key_type": "any", "max_ttl": "1h", "no_store": true,
	}); err != nil {
		t.Fatal(err)
	}
	if err := e.vault.Sys().PutPolicyWithContext(ctx, "anchors", `path "`+mount+`/issuer/+/sign/`+leafRole+`" { capabilities = ["update"] }`); err != nil {
		t.Fatal(err)
	}
	tok, err := e.vault.Auth().Token().CreateWithContext(ctx, &vaultapi.TokenCreateRequest{Policies: []string{"anchors"}, TTL: "1h"})
	if err != nil {
		t.Fatal(err)
	}
	createOrFail(t, e.client, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "anchors-token"},
		StringData: map[string]string{"token": tok.Auth.ClientToken}})
	issuerOn := func(ref string) string {
		name := "anchors-on-" + ref
		spec := v1alpha1.VaultIssuerSpec{Server: e.lab.Vault.Addr, PKI: v1alpha1.PKISpec{Mount: mount, Role: leafRole, IssuerRef: ref},
			Auth: v1alpha1.VaultAuth{TokenSecretRef: &v1alpha1.SecretKeySelector{Name: "anchors-token", Key: "token"}}}
		vi := &v1alpha1.VaultIssuer{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: name}, Spec: spec}
		createOrFail(t, e.client, vi)
		e.waitIssuer(t, vi, metav1.ConditionTrue, "")
		return name
	}
	n := 0
	// caOf signs a leaf through the issuer and returns its ca.crt.
	caOf := func(issuer string) []string {
		n++
		cr := newCR("team-a", fmt.Sprintf("anchors-%d", n), issuerRef(issuer), pkitest.URICSR(t, pkitest.ECKey(t), "", "spiffe://east.mesh/ns/a/sa/anchors"), false, 30*time.Minute)
		createOrFail(t, e.client, cr)
		e.waitCR(t, cr, cmapi.CertificateRequestReasonIssued, "", 60*time.Second)
		var names []string
		for _, c := range parseCerts(t, cr.Status.CA) {
			names = append(names, c.Subject.CommonName)
		}
		return names
	}
	// waitCA signs leaves until ca.crt is want: the issuer re-reads the
	// anchors at its health check (every 3s here), not at once.
	waitCA := func(issuer string, want ...string) {
		t.Helper()
		var got []string
		eventually(t, 30*time.Second, fmt.Sprintf("ca.crt of %s = %v", issuer, want), func() (bool, string) {
			got = caOf(issuer)
			return strings.Join(got, ",") == strings.Join(want, ","), fmt.Sprint(got)
		})
	}

	// crlsOf names the issuers whose CRLs each side reads for ref.
	m, err := vault.NewMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	issuerVault, err := vault.NewClient(vault.Config{Address: e.lab.Vault.Addr,
		Auth: vault.TokenAuth(func(context.Context) (string, error) { return tok.Auth.ClientToken, nil })}, m, clock.RealClock{})
	if err != nil {
		t.Fatal(err)
	}
	cliVault, err := vaultadmin.NewClient(vaultadmin.ClientConfig{Addr: e.lab.Vault.Addr, Timeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	wantCRLs := func(ref string, want ...string) {
		t.Helper()
		ics, err := issuerVault.IssuerCRLs(ctx, mount, ref)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, ic := range ics {
			if !pki.CRLIssuedBy(ic.CRL, ic.Cert) {
				t.Errorf("the CRL read for %s is not its own", ic.Cert.Subject.CommonName)
			}
			got = append(got, ic.Cert.Subject.CommonName)
		}
		slices.Sort(got)
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("the issuer reads the CRLs of %v for issuer %s; want those of the trust anchors %v, never a stray's", got, ref, want)
		}
		fetched, err := vaultadmin.FetchCRLs(ctx, cliVault, mount, "", time.Now())
		if err != nil {
			t.Fatal(err)
		}
		var cli []string
		for _, ic := range fetched {
			cli = append(cli, ic.Cert.Subject.CommonName)
		}
		slices.Sort(cli)
		if strings.Join(cli, ",") != strings.Join(want, ",") {
			t.Errorf("status and revoke read the CRLs of %v; the issuer those of %v", cli, want)
		}
	}

	on1 := issuerOn("anchors-1")
	if got := caOf(on1); strings.Join(got, ",") != "anchors root 1" {
		t.Fatalf("ca.crt lists %v; want only the root bootstrap made, never a stray self-signed issuer of the mount", got)
	}
	wantCRLs("anchors-1", "anchors root 1")

	// A second root, added as a root rotation adds it: both clusters' ca.crt
	// list both roots, their own signing root first; the strays never.
	cli("vault", "bootstrap", "--issuer-name", "anchors-2", "--common-name", "anchors root 2", "--set-default=false")
	waitCA(on1, "anchors root 1", "anchors root 2")
	on2 := issuerOn("anchors-2")
	waitCA(on2, "anchors root 2", "anchors root 1")
	wantCRLs("anchors-1", "anchors root 1", "anchors root 2")
	wantCRLs("anchors-2", "anchors root 1", "anchors root 2")

	// Retired, root 1 leaves every chain.
	cli("vault", "bootstrap", "--issuer-name", "anchors-2")
	cli("vault", "retire-root", "--issuer-name", "anchors-1", "--force")
	waitCA(on2, "anchors root 2")
	wantCRLs("anchors-2", "anchors root 2")
	s, err := e.vault.Logical().ReadWithContext(ctx, mount+"/issuer/anchors-2")
	if err != nil || s == nil {
		t.Fatal(err)
	}
	if chain := fmt.Sprint(s.Data["manual_chain"]); strings.Contains(chain, root1.id) {
		t.Errorf("root 2's manual_chain still names the retired root: %s", chain)
	}
}

// issuerCert reads a Vault issuer's ID and CN.
func (e *env) issuerCert(ctx context.Context, t *testing.T, mount, ref string) *issuerInfo {
	t.Helper()
	s, err := e.vault.Logical().ReadWithContext(ctx, mount+"/issuer/"+ref)
	if err != nil || s == nil {
		t.Fatalf("reading issuer %s of %s/: %v", ref, mount, err)
	}
	certs, err := pki.DecodeCertificates([]byte(s.Data["certificate"].(string)), pki.MaxChainPEMSize)
	if err != nil {
		t.Fatal(err)
	}
	return &issuerInfo{id: s.Data["issuer_id"].(string), cn: certs[0].Subject.CommonName}
}

type issuerInfo struct{ id, cn string }
