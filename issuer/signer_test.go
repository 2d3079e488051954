package issuer

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	"github.com/cert-manager/issuer-lib/controllers/signer"
	"github.com/go-logr/logr/funcr"
	"github.com/prometheus/client_golang/prometheus"
	authenticationv1 "k8s.io/api/authentication/v1"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/meshtrust/meshtrust/internal/pki/pkitest"
	"github.com/meshtrust/meshtrust/issuer/api/v1alpha1"
	"github.com/meshtrust/meshtrust/issuer/vault"
)

// pkiFault is a fault the fake Vault injects.
type pkiFault int

const (
	faultNone pkiFault = iota
	faultWrongKey
	faultTruncate
	faultSealed
	faultDenied
	faultBadLogin
	// faultUnconstrained signs intermediates without the name constraint,
	// as a Vault older than permitted_uri_domains does (it only warns).
	faultUnconstrained
	// faultPathLength stamps a path length other than the one asked for.
	faultPathLength
)

// fakePKI is a Vault PKI mount that misbehaves on cue. Only faults a real
// Vault cannot produce at will are tested against it; the happy paths run
// against the real Vault in e2e/issuer.
type fakePKI struct {
	t     *testing.T
	root  *pkitest.Cert
	now   time.Time
	fault pkiFault
	// clientToken is what a successful login hands out.
	clientToken string
	mu          sync.Mutex
	loginCount  atomic.Int32
}

// logins is how many logins reached the fake Vault.
func (f *fakePKI) logins() int32 { return f.loginCount.Load() }

func (f *fakePKI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	write := func(code int, body any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(body)
	}
	rootPEM := string(f.root.PEM())
	if f.fault == faultSealed && r.URL.Path != "/v1/sys/health" {
		write(http.StatusServiceUnavailable, map[string]any{"errors": []string{"Vault is sealed"}})
		return
	}
	switch {
	case r.URL.Path == "/v1/sys/health":
		write(299, map[string]any{"initialized": true, "sealed": f.fault == faultSealed})
	case strings.HasSuffix(r.URL.Path, "/login"):
		f.loginCount.Add(1)
		if f.fault == faultBadLogin {
			write(http.StatusBadRequest, map[string]any{"errors": []string{"invalid role or secret ID"}})
			return
		}
		write(http.StatusOK, map[string]any{"auth": map[string]any{"client_token": f.clientToken, "lease_duration": 3600, "renewable": true}})
	case strings.HasPrefix(r.URL.Path, "/v1/pki/issuer/") && strings.HasSuffix(r.URL.Path, "/json"):
		write(http.StatusOK, map[string]any{"data": map[string]any{"certificate": rootPEM, "ca_chain": []string{rootPEM}}})
	case strings.Contains(r.URL.Path, "sign"):
		if f.fault == faultDenied {
			write(http.StatusForbidden, map[string]any{"errors": []string{"1 error occurred:\n\t* permission denied\n\n"}})
			return
		}
		var body struct {
			CSR                 string   `json:"csr"`
			TTL                 string   `json:"ttl"`
			MaxPathLength       string   `json:"max_path_length"`
			PermittedURIDomains []string `json:"permitted_uri_domains"`
		}
		_ = json.NewDecoder(r.Body).Decode(&body)
		block, _ := pem.Decode([]byte(body.CSR))
		csr, err := x509.ParseCertificateRequest(block.Bytes)
		if err != nil {
			write(http.StatusBadRequest, map[string]any{"errors": []string{"bad csr"}})
			return
		}
		ttl, _ := time.ParseDuration(body.TTL)
		pub := csr.PublicKey
		if f.fault == faultWrongKey {
			pub = pkitest.ECKey(f.t).Public()
		}
		if f.fault == faultTruncate {
			ttl /= 2
		}
		constraints := &x509.Certificate{PermittedURIDomains: body.PermittedURIDomains, PermittedDNSDomainsCritical: len(body.PermittedURIDomains) > 0}
		constraints.MaxPathLen, _ = strconv.Atoi(body.MaxPathLength)
		constraints.MaxPathLenZero = constraints.MaxPathLen == 0
		switch f.fault {
		case faultUnconstrained:
			constraints.PermittedURIDomains, constraints.PermittedDNSDomainsCritical = nil, false
		case faultPathLength:
			constraints.MaxPathLen, constraints.MaxPathLenZero = 1, false
		}
		cert := f.issue(pub, ttl, constraints)
		write(http.StatusOK, map[string]any{"data": map[string]any{
			"certificate": string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert})),
			"ca_chain":    []string{rootPEM},
		}})
	default:
		write(http.StatusNotFound, map[string]any{"errors": []string{}})
	}
}

// issue signs an intermediate for pub with the constraints' path length and
// URI name constraint.
func (f *fakePKI) issue(pub crypto.PublicKey, ttl time.Duration, constraints *x509.Certificate) []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial, NotBefore: f.now.Add(-30 * time.Second), NotAfter: f.now.Add(ttl),
		BasicConstraintsValid: true, IsCA: true, KeyUsage: x509.KeyUsageCertSign,
		MaxPathLen: constraints.MaxPathLen, MaxPathLenZero: constraints.MaxPathLenZero,
		PermittedURIDomains: constraints.PermittedURIDomains, PermittedDNSDomainsCritical: constraints.PermittedDNSDomainsCritical,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, f.root.Cert, pub, f.root.Key)
	if err != nil {
		f.t.Fatal(err)
	}
	return der
}

type harness struct {
	signer   *Signer
	client   client.Client
	registry *prometheus.Registry
	logs     *bytes.Buffer
	ctx      context.Context
}

const (
	secretAppRoleID = "SECRET-approle-secret-id-7f3a"
	secretToken     = "hvs.SECRET-static-token-91c2"
	secretClient    = "hvs.SECRET-client-token-55d0"
)

func newHarness(t *testing.T, objs ...runtime.Object) *harness {
	t.Helper()
	return newHarnessWith(t, interceptor.Funcs{}, objs...)
}

// newHarnessWith is newHarness with API calls intercepted, for what the
// fake client cannot do itself (mint service-account tokens, review them).
func newHarnessWith(t *testing.T, funcs interceptor.Funcs, objs ...runtime.Object) *harness {
	t.Helper()
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, cmapi.AddToScheme, v1alpha1.AddToScheme} {
		if err := add(scheme); err != nil {
			t.Fatal(err)
		}
	}
	secrets := []runtime.Object{
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "approle"}, Data: map[string][]byte{"secretId": []byte(secretAppRoleID + "\n")}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "token"}, Data: map[string][]byte{"token": []byte(secretToken)}},
	}
	// Status writes succeed, as on a real API server, so a test can see
	// that Sign makes none.
	cl := fake.NewClientBuilder().WithScheme(scheme).WithRuntimeObjects(append(secrets, objs...)...).
		WithStatusSubresource(&cmapi.CertificateRequest{}, &certificatesv1.CertificateSigningRequest{}).
		WithInterceptorFuncs(funcs).Build()
	reg := prometheus.NewRegistry()
	m, err := vault.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	clk := clocktesting.NewFakeClock(pkitest.RandomNow(t))
	logs := &bytes.Buffer{}
	var logMu sync.Mutex
	logger := funcr.New(func(prefix, args string) {
		logMu.Lock()
		defer logMu.Unlock()
		logs.WriteString(prefix + " " + args + "\n")
	}, funcr.Options{Verbosity: 10})
	return &harness{
		signer: &Signer{
			Client: cl, APIReader: cl, Factory: vault.NewCache(m, clk), Metrics: m, Clock: clk,
			ClusterResourceNamespace: "ns",
		},
		client: cl, registry: reg, logs: logs,
		ctx: log.IntoContext(context.Background(), logger),
	}
}

func testIssuer(url string, auth v1alpha1.VaultAuth) *v1alpha1.VaultIssuer {
	return &v1alpha1.VaultIssuer{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "vi", UID: "uid-1", Generation: 1},
		Spec: v1alpha1.VaultIssuerSpec{
			Server: url, PKI: v1alpha1.PKISpec{Mount: "pki", Role: "leaf"},
			Intermediate: &v1alpha1.IntermediateSpec{TrustDomain: "east.mesh"},
			Auth:         auth,
		},
	}
}

var appRoleAuth = v1alpha1.VaultAuth{AppRole: &v1alpha1.AppRoleAuth{MountPath: "approle", RoleID: "role", SecretRef: v1alpha1.SecretKeySelector{Name: "approle", Key: "secretId"}}}

func caRequest(t *testing.T, csr []byte, d time.Duration) signer.CertificateRequestObject {
	t.Helper()
	return signer.CertificateRequestObjectFromCertificateRequest(caCR(csr, d))
}

func caCR(csr []byte, d time.Duration) *cmapi.CertificateRequest {
	return &cmapi.CertificateRequest{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "cr"},
		Spec:       cmapi.CertificateRequestSpec{Request: csr, IsCA: true, Duration: &metav1.Duration{Duration: d}},
	}
}

func TestSignFaults(t *testing.T) {
	tests := []struct {
		name      string
		fault     pkiFault
		auth      v1alpha1.VaultAuth
		wantErrAs any
		wantErr   string
		// wantGranted is the issued lifetime, when it differs from the
		// requested 4h.
		wantGranted time.Duration
	}{
		{name: "good", fault: faultNone, auth: appRoleAuth},
		{name: "certificate for another key", fault: faultWrongKey, auth: appRoleAuth, wantErrAs: &signer.PermanentError{}, wantErr: "does not match the CSR"},
		{name: "sealed Vault waits on the issuer", fault: faultSealed, auth: appRoleAuth, wantErrAs: &signer.IssuerError{}, wantErr: "Vault is sealed"},
		{name: "policy denial carries Vault's text", fault: faultDenied, auth: appRoleAuth, wantErr: "permission denied"},
		{name: "wrong AppRole credentials wait on the issuer", fault: faultBadLogin, auth: appRoleAuth, wantErrAs: &signer.IssuerError{}, wantErr: "invalid role or secret ID"},
		{name: "intermediate without the name constraint is refused", fault: faultUnconstrained, auth: appRoleAuth, wantErrAs: &signer.PermanentError{}, wantErr: `permitted URI domains are [], not ["east.mesh"]`},
		{name: "intermediate with another path length is refused", fault: faultPathLength, auth: appRoleAuth, wantErrAs: &signer.PermanentError{}, wantErr: "path length 1, not the 0 asked for"},
		{name: "truncated lifetime is issued, not refused", fault: faultTruncate, auth: appRoleAuth, wantGranted: 2*time.Hour + 30*time.Second},
		{name: "missing Secret names the field", fault: faultNone, auth: v1alpha1.VaultAuth{TokenSecretRef: &v1alpha1.SecretKeySelector{Name: "nope", Key: "token"}}, wantErrAs: &signer.IssuerError{}, wantErr: "spec.auth.tokenSecretRef: Secret ns/nope not found"},
		{name: "missing key names the field", fault: faultNone, auth: v1alpha1.VaultAuth{TokenSecretRef: &v1alpha1.SecretKeySelector{Name: "token", Key: "nope"}}, wantErrAs: &signer.IssuerError{}, wantErr: `spec.auth.tokenSecretRef: key "nope" not found in Secret ns/token`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			now := pkitest.RandomNow(t)
			fp := &fakePKI{t: t, root: newCert(t, "root", true, pkitest.ECKey(t), nil, now.Add(-time.Hour), 48*time.Hour), now: now, fault: tc.fault, clientToken: secretClient}
			srv := httptest.NewServer(fp)
			defer srv.Close()
			cr := caCR(pkitest.URICSR(t, pkitest.ECKey(t), "east.mesh ca", "spiffe://east.mesh"), 4*time.Hour)
			h := newHarness(t, cr)
			h.signer.Clock = clocktesting.NewFakeClock(now)
			iss := testIssuer(srv.URL, tc.auth)
			var before cmapi.CertificateRequest
			if err := h.client.Get(h.ctx, client.ObjectKeyFromObject(cr), &before); err != nil {
				t.Fatal(err)
			}
			bundle, err := h.signer.Sign(h.ctx, signer.CertificateRequestObjectFromCertificateRequest(cr), iss)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("Sign: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("Sign error = %v, want it to contain %q", err, tc.wantErr)
			}
			if tc.wantErrAs != nil && !errors.As(err, tc.wantErrAs) {
				t.Fatalf("Sign error %v is not a %T", err, tc.wantErrAs)
			}
			if tc.wantErrAs == nil && err != nil && (errors.As(err, &signer.PermanentError{}) || errors.As(err, &signer.IssuerError{})) {
				t.Fatalf("Sign error %v should be retryable", err)
			}
			if err == nil {
				roots := decodeAll(t, bundle.CAPEM)
				if len(roots) != 1 || !roots[0].Equal(fp.root.Cert) {
					t.Fatal("ca.crt is not the root")
				}
			}
			if err != nil {
				return
			}
			want := tc.wantGranted
			if want == 0 {
				want = 4*time.Hour + 30*time.Second
			}
			if got := decodeAll(t, bundle.ChainPEM)[0]; got.NotAfter.Sub(got.NotBefore) != want {
				t.Errorf("issued for %s, want %s", got.NotAfter.Sub(got.NotBefore), want)
			}
			// Sign writes nothing to the request: a status write there
			// re-enqueued it and signed it twice. The lifetime controller
			// reports truncation once the request is issued.
			var after cmapi.CertificateRequest
			if err := h.client.Get(h.ctx, client.ObjectKeyFromObject(cr), &after); err != nil {
				t.Fatal(err)
			}
			if after.ResourceVersion != before.ResourceVersion {
				t.Errorf("Sign wrote the request: conditions %v", after.Status.Conditions)
			}
		})
	}
}

// TestSecretsNeverLeak drives the paths that handle Vault tokens, AppRole
// secret IDs and service-account tokens through success and failure, and
// looks for the secrets in every error (issuer-lib turns them into
// conditions and events), log line and metric label.
func TestSecretsNeverLeak(t *testing.T) {
	tokenAuth := v1alpha1.VaultAuth{TokenSecretRef: &v1alpha1.SecretKeySelector{Name: "token", Key: "token"}}
	for _, fault := range []pkiFault{faultNone, faultDenied, faultBadLogin, faultSealed, faultWrongKey} {
		for _, auth := range []v1alpha1.VaultAuth{appRoleAuth, tokenAuth, kubernetesAuthFor("vault"), kubernetesAuthFor("https://kubernetes.default.svc")} {
			now := pkitest.RandomNow(t)
			fp := &fakePKI{t: t, root: newCert(t, "root", true, pkitest.ECKey(t), nil, now.Add(-time.Hour), 48*time.Hour), now: now, fault: fault, clientToken: secretClient}
			srv := httptest.NewServer(fp)
			api := &kubernetesAPI{apiAudience: true}
			h := newHarnessWith(t, api.funcs(), &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "vault-login"}})
			iss := testIssuer(srv.URL, auth)
			var texts []string
			if err := h.signer.Check(h.ctx, iss); err != nil {
				texts = append(texts, err.Error())
			}
			if _, err := h.signer.Sign(h.ctx, caRequest(t, pkitest.URICSR(t, pkitest.ECKey(t), "east.mesh ca", "spiffe://east.mesh"), time.Hour), iss); err != nil {
				texts = append(texts, err.Error())
			}
			srv.Close()
			texts = append(texts, h.logs.String())
			families, err := h.registry.Gather()
			if err != nil {
				t.Fatal(err)
			}
			for _, mf := range families {
				for _, m := range mf.GetMetric() {
					for _, lp := range m.GetLabel() {
						texts = append(texts, lp.GetValue())
					}
				}
			}
			for _, text := range texts {
				for _, secret := range []string{secretAppRoleID, secretToken, secretClient, secretServiceAccountToken} {
					if strings.Contains(text, secret) {
						t.Errorf("fault %d: secret %q leaked into %q", fault, secret, text)
					}
				}
			}
		}
	}
}

// A Vault whose TLS certificate was re-issued by another CA fails the check
// until the CA bundle Secret is updated; the update alone, without touching
// the issuer, must be enough.
func TestCheckRereadsTheCABundleAfterAFailure(t *testing.T) {
	now := pkitest.RandomNow(t)
	fp := &fakePKI{t: t, root: newCert(t, "root", true, pkitest.ECKey(t), nil, now.Add(-time.Hour), 48*time.Hour), now: now, clientToken: secretClient}
	srv := httptest.NewTLSServer(fp)
	defer srv.Close()
	other := newCert(t, "some other CA", true, pkitest.ECKey(t), nil, now.Add(-time.Hour), 48*time.Hour)
	bundle := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "vault-ca"}, Data: map[string][]byte{"ca.crt": other.PEM()}}
	h := newHarness(t, bundle)
	iss := testIssuer(srv.URL, appRoleAuth)
	iss.Spec.CABundleSecretRef = &v1alpha1.SecretKeySelector{Name: "vault-ca", Key: "ca.crt"}

	if err := h.signer.Check(h.ctx, iss); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("Check against a Vault the CA bundle does not vouch for: %v, want a TLS failure", err)
	}
	bundle.Data["ca.crt"] = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := h.client.Update(h.ctx, bundle); err != nil {
		t.Fatal(err)
	}
	if err := h.signer.Check(h.ctx, iss); err != nil {
		t.Fatalf("Check after the CA bundle Secret was fixed: %v", err)
	}
}

const secretServiceAccountToken = "eyJhbGciOiJSUzI1NiJ9.SECRET-service-account-token.sig"

// kubernetesAPI stands in for the API server's TokenRequest and TokenReview:
// it mints secretServiceAccountToken and says whether the API server would
// accept it (apiAudience), or refuses the review (reviewErr).
type kubernetesAPI struct {
	apiAudience bool
	reviewErr   error
	reviews     int
}

func (k *kubernetesAPI) funcs() interceptor.Funcs {
	return interceptor.Funcs{
		SubResourceCreate: func(ctx context.Context, c client.Client, subResource string, obj client.Object, sub client.Object, opts ...client.SubResourceCreateOption) error {
			tr, ok := sub.(*authenticationv1.TokenRequest)
			if !ok || subResource != "token" {
				return c.SubResource(subResource).Create(ctx, obj, sub, opts...)
			}
			tr.Status.Token = secretServiceAccountToken
			return nil
		},
		Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
			review, ok := obj.(*authenticationv1.TokenReview)
			if !ok {
				return c.Create(ctx, obj, opts...)
			}
			k.reviews++
			if k.reviewErr != nil {
				return k.reviewErr
			}
			review.Status.Authenticated = k.apiAudience && review.Spec.Token == secretServiceAccountToken && len(review.Spec.Audiences) == 0
			return nil
		},
	}
}

func kubernetesAuthFor(audiences ...string) v1alpha1.VaultAuth {
	return v1alpha1.VaultAuth{Kubernetes: &v1alpha1.KubernetesAuth{Role: "east", ServiceAccountRef: v1alpha1.ServiceAccountRef{Name: "vault-login", Audiences: audiences}}}
}

// A login token with custom audiences goes to Vault only once the API
// server has said it would refuse it; the default audience needs no review.
func TestAPIServerAudienceIsRefused(t *testing.T) {
	forbidden := apierrors.NewForbidden(schema.GroupResource{Group: "authentication.k8s.io", Resource: "tokenreviews"}, "", errors.New("RBAC"))
	tests := []struct {
		name        string
		api         kubernetesAPI
		auth        v1alpha1.VaultAuth
		wantErr     string
		wantReviews int
	}{
		{name: "default audience, no review", api: kubernetesAPI{apiAudience: true}, auth: kubernetesAuthFor()},
		{name: "custom audience the API server refuses", api: kubernetesAPI{}, auth: kubernetesAuthFor("vault"), wantReviews: 1},
		{name: "custom audience the API server accepts", api: kubernetesAPI{apiAudience: true}, auth: kubernetesAuthFor("vault", "https://kubernetes.default.svc"), wantReviews: 1,
			wantErr: `spec.auth.kubernetes.serviceAccountRef.audiences: ["vault" "https://kubernetes.default.svc"] includes an audience the Kubernetes API server accepts`},
		{name: "review not allowed", api: kubernetesAPI{reviewErr: forbidden}, auth: kubernetesAuthFor("vault"), wantReviews: 1,
			wantErr: "needs create on tokenreviews"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			now := pkitest.RandomNow(t)
			fp := &fakePKI{t: t, root: newCert(t, "root", true, pkitest.ECKey(t), nil, now.Add(-time.Hour), 48*time.Hour), now: now, clientToken: secretClient}
			srv := httptest.NewServer(fp)
			defer srv.Close()
			api := tc.api
			h := newHarnessWith(t, api.funcs(), &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "vault-login"}})
			err := h.signer.Check(h.ctx, testIssuer(srv.URL, tc.auth))
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("Check: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("Check error = %v, want it to contain %q", err, tc.wantErr)
			}
			if tc.wantErr != "" && fp.logins() != 0 {
				t.Errorf("the token reached Vault %d times", fp.logins())
			}
			if api.reviews != tc.wantReviews {
				t.Errorf("%d TokenReviews, want %d", api.reviews, tc.wantReviews)
			}
			if err != nil && strings.Contains(err.Error(), secretServiceAccountToken) {
				t.Errorf("the service-account token leaked into %q", err)
			}
			if strings.Contains(h.logs.String(), secretServiceAccountToken) {
				t.Error("the service-account token leaked into the log")
			}
		})
	}
}
