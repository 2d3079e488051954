package issuer_test

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"strings"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	vaultapi "github.com/hashicorp/vault/api"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshtrust/meshtrust/internal/pki/pkitest"
	"github.com/meshtrust/meshtrust/issuer/api/v1alpha1"
)

// TestBadRequests sends requests the issuer must refuse permanently, each
// with a reason naming what is wrong, and nothing signed.
func TestBadRequests(t *testing.T) {
	e := getEnv(t)
	withTD := &v1alpha1.VaultIssuer{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "bad-input"}, Spec: e.spec(kubernetesAuth("team-a", "meshtrust"), trustDomain)}
	noTD := &v1alpha1.VaultIssuer{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "no-trust-domain"}, Spec: e.spec(kubernetesAuth("team-a", "meshtrust"), "")}
	for _, vi := range []*v1alpha1.VaultIssuer{withTD, noTD} {
		createOrFail(t, e.client, vi)
		e.waitIssuer(t, vi, metav1.ConditionTrue, "")
	}
	good := pkitest.URICSR(t, pkitest.ECKey(t), "east", "spiffe://east.mesh")
	block, _ := pem.Decode(good)
	tampered := append([]byte(nil), block.Bytes...)
	tampered[len(tampered)-3] ^= 0xff

	signedBefore := e.counter(t, "meshtrust_issuer_certificates_signed_total", nil)
	tests := []struct {
		name    string
		issuer  string
		csr     []byte
		isCA    bool
		wantMsg string
	}{
		{name: "malformed", issuer: withTD.Name, csr: []byte("-----BEGIN CERTIFICATE REQUEST-----\nnot base64!\n-----END CERTIFICATE REQUEST-----\n"), isCA: true, wantMsg: "spec.request: the CSR is not PEM-encoded"},
		{name: "bad-signature", issuer: withTD.Name, csr: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: tampered}), isCA: true, wantMsg: "signature does not verify"},
		{name: "other-trust-domain", issuer: withTD.Name, csr: pkitest.URICSR(t, pkitest.ECKey(t), "west", "spiffe://west.mesh"), isCA: true, wantMsg: `URI SAN "spiffe://west.mesh" is not allowed`},
		{name: "uri-with-path", issuer: withTD.Name, csr: pkitest.URICSR(t, pkitest.ECKey(t), "east", "spiffe://east.mesh/ns/x"), isCA: true, wantMsg: `URI SAN "spiffe://east.mesh/ns/x" is not allowed`},
		{name: "leaf-other-trust-domain", issuer: withTD.Name, csr: pkitest.URICSR(t, pkitest.ECKey(t), "", "spiffe://west.mesh/ns/a/sa/b"), wantMsg: `URI SAN "spiffe://west.mesh/ns/a/sa/b" is not allowed`},
		{name: "ca-without-trust-domain", issuer: noTD.Name, csr: good, isCA: true, wantMsg: "spec.intermediate.trustDomain: is empty"},
	}
	crs := map[string]*cmapi.CertificateRequest{}
	for _, tc := range tests {
		cr := newCR("team-a", "bad-"+tc.name, issuerRef(tc.issuer), tc.csr, tc.isCA, time.Hour)
		createOrFail(t, e.client, cr)
		crs[tc.name] = cr
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cr := e.waitCR(t, crs[tc.name], cmapi.CertificateRequestReasonFailed, tc.wantMsg, 60*time.Second)
			if len(cr.Status.Certificate) != 0 {
				t.Error("a refused request carries a certificate")
			}
			eventually(t, 30*time.Second, "a warning event", func() (bool, string) {
				return e.hasEvent(t, cr, "PermanentError"), "none"
			})
		})
	}
	if n := e.counter(t, "meshtrust_issuer_certificates_signed_total", nil) - signedBefore; n != 0 {
		t.Errorf("%v certificates signed for refused requests", n)
	}
}

// TestBadIssuerSettings covers settings that keep an issuer from becoming
// Ready, and a policy that lets the issuer log in but not sign.
func TestBadIssuerSettings(t *testing.T) {
	e := getEnv(t)
	ctx := context.Background()
	denied, err := e.vault.Auth().Token().CreateWithContext(ctx, &vaultapi.TokenCreateRequest{Policies: []string{deniedPolicy}, TTL: "1h"})
	if err != nil {
		t.Fatal(err)
	}
	createOrFail(t, e.client, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "bad-creds"},
		StringData: map[string]string{"secretId": "not-a-valid-secret-id", "token": denied.Auth.ClientToken},
	})
	// The API server accepts tokens for its own audience, by default its
	// service-account issuer.
	discovery, err := e.cluster.Clientset.Discovery().RESTClient().Get().AbsPath("/.well-known/openid-configuration").DoRaw(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var oidc struct {
		Issuer string `json:"issuer"`
	}
	if err := json.Unmarshal(discovery, &oidc); err != nil || oidc.Issuer == "" {
		t.Fatalf("the API server's service-account issuer: %v %s", err, discovery)
	}
	tests := []struct {
		name    string
		auth    v1alpha1.VaultAuth
		server  string // replaces the lab's Vault address
		wantMsg string
	}{
		{name: "missing-secret", auth: v1alpha1.VaultAuth{TokenSecretRef: &v1alpha1.SecretKeySelector{Name: "does-not-exist", Key: "token"}}, wantMsg: "spec.auth.tokenSecretRef: Secret team-a/does-not-exist not found"},
		{name: "missing-key", auth: v1alpha1.VaultAuth{TokenSecretRef: &v1alpha1.SecretKeySelector{Name: "bad-creds", Key: "nope"}}, wantMsg: `spec.auth.tokenSecretRef: key "nope" not found in Secret team-a/bad-creds`},
		{name: "wrong-approle", auth: v1alpha1.VaultAuth{AppRole: &v1alpha1.AppRoleAuth{RoleID: e.roleID, SecretRef: v1alpha1.SecretKeySelector{Name: "bad-creds", Key: "secretId"}}}, wantMsg: "vault login (auth/approle/login): HTTP 400"},
		{name: "cleartext-server", auth: v1alpha1.VaultAuth{TokenSecretRef: &v1alpha1.SecretKeySelector{Name: "bad-creds", Key: "token"}}, server: "http://vault.example.invalid:8200", wantMsg: "spec.server: http://vault.example.invalid:8200 would send Vault credentials in cleartext"},
		{name: "api-server-audience", auth: kubernetesAuth("team-a", "meshtrust", oidc.Issuer), wantMsg: "spec.auth.kubernetes.serviceAccountRef.audiences: [\"meshtrust\" \"" + oidc.Issuer + "\"] includes an audience the Kubernetes API server accepts"},
		{name: "missing-service-account", auth: v1alpha1.VaultAuth{Kubernetes: &v1alpha1.KubernetesAuth{Role: "team-a", ServiceAccountRef: v1alpha1.ServiceAccountRef{Name: "nobody"}}}, wantMsg: "spec.auth.kubernetes.serviceAccountRef: service account team-a/nobody not found"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			vi := &v1alpha1.VaultIssuer{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "bad-" + tc.name}, Spec: e.spec(tc.auth, trustDomain)}
			if tc.server != "" {
				vi.Spec.Server = tc.server
			}
			createOrFail(t, e.client, vi)
			cond := e.waitIssuer(t, vi, metav1.ConditionFalse, tc.wantMsg)
			if cond.Reason != "Pending" {
				t.Errorf("reason %q, want Pending (retried: the fix is outside the issuer)", cond.Reason)
			}
			eventually(t, 30*time.Second, "a warning event", func() (bool, string) {
				return e.hasEvent(t, vi, "RetryableError"), "none"
			})
		})
	}

	t.Run("policy-denies-sign", func(t *testing.T) {
		vi := &v1alpha1.VaultIssuer{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "bad-policy"},
			Spec: e.spec(v1alpha1.VaultAuth{TokenSecretRef: &v1alpha1.SecretKeySelector{Name: "bad-creds", Key: "token"}}, trustDomain)}
		createOrFail(t, e.client, vi)
		e.waitIssuer(t, vi, metav1.ConditionTrue, "")
		cr := newCR("team-a", "bad-policy", issuerRef(vi.Name), pkitest.URICSR(t, pkitest.ECKey(t), "east", "spiffe://east.mesh"), true, time.Hour)
		createOrFail(t, e.client, cr)
		cr = e.waitCR(t, cr, cmapi.CertificateRequestReasonPending, "HTTP 403", 60*time.Second)
		if msg := crReady(cr).Message; !strings.Contains(msg, "permission denied") {
			t.Errorf("reason %q does not carry Vault's message", msg)
		}
	})
}

// TestVaultOutage stops Vault: the issuer turns not Ready through its
// periodic check, a request made meanwhile stays pending and is never
// failed, and both recover once Vault is back.
func TestVaultOutage(t *testing.T) {
	e := getEnv(t)
	ctx := context.Background()
	vi := &v1alpha1.VaultIssuer{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "outage"}, Spec: e.spec(kubernetesAuth("team-a", "meshtrust"), trustDomain)}
	createOrFail(t, e.client, vi)
	e.waitIssuer(t, vi, metav1.ConditionTrue, "")

	if err := e.lab.Vault.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	restarted := false
	t.Cleanup(func() {
		if !restarted {
			_ = e.lab.Vault.Start(ctx)
		}
	})
	cond := e.waitIssuer(t, vi, metav1.ConditionFalse, "vault health")
	t.Logf("issuer while Vault is down: %s: %s", cond.Reason, cond.Message)

	cr := newCR("team-a", "during-outage", issuerRef(vi.Name), pkitest.URICSR(t, pkitest.ECKey(t), "east", "spiffe://east.mesh"), true, time.Hour)
	createOrFail(t, e.client, cr)
	e.waitCR(t, cr, cmapi.CertificateRequestReasonPending, "", 30*time.Second)

	if err := e.lab.Vault.Start(ctx); err != nil {
		t.Fatal(err)
	}
	restarted = true
	e.waitIssuer(t, vi, metav1.ConditionTrue, "")
	e.waitCR(t, cr, cmapi.CertificateRequestReasonIssued, "", 90*time.Second)
	if cr.Status.FailureTime != nil {
		t.Error("the request was marked failed during the outage")
	}
}

// TestAPIValidation checks the CRD's validation: exactly one auth method and
// a bare trust domain.
func TestAPIValidation(t *testing.T) {
	e := getEnv(t)
	ctx := context.Background()
	tok := &v1alpha1.SecretKeySelector{Name: "x", Key: "y"}
	tests := []struct {
		name    string
		mutate  func(*v1alpha1.VaultIssuerSpec)
		wantErr string
	}{
		{name: "two-auth-methods", mutate: func(s *v1alpha1.VaultIssuerSpec) {
			s.Auth.AppRole = &v1alpha1.AppRoleAuth{RoleID: "r", SecretRef: *tok}
		}, wantErr: "exactly one of kubernetes, appRole or tokenSecretRef"},
		{name: "no-auth-method", mutate: func(s *v1alpha1.VaultIssuerSpec) { s.Auth = v1alpha1.VaultAuth{} }, wantErr: "exactly one of kubernetes, appRole or tokenSecretRef"},
		{name: "spiffe-trust-domain", mutate: func(s *v1alpha1.VaultIssuerSpec) { s.Intermediate.TrustDomain = "spiffe://east.mesh" }, wantErr: "spec.intermediate.trustDomain"},
		{name: "valid", mutate: func(*v1alpha1.VaultIssuerSpec) {}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			spec := e.spec(v1alpha1.VaultAuth{TokenSecretRef: tok}, trustDomain)
			tc.mutate(&spec)
			vi := &v1alpha1.VaultIssuer{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "validation-" + tc.name}, Spec: spec}
			err := e.client.Create(ctx, vi, client.DryRunAll)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("valid issuer refused: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error = %v, want it to contain %q", err, tc.wantErr)
			}
		})
	}
}
