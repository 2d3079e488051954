package cli

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/meshtrust/meshtrust/cmd/meshtrust/app"
	"github.com/meshtrust/meshtrust/internal/pki"
	"github.com/meshtrust/meshtrust/internal/pki/pkitest"
	"github.com/meshtrust/meshtrust/syncer/decision"
)

// cli runs meshtrust in-process with a fixed environment and keeps every
// byte it printed, so the test can check at the end that no secret leaked.
type cli struct {
	env map[string]string
	mu  sync.Mutex
	all bytes.Buffer
}

type result struct {
	code           int
	stdout, stderr string
}

// withoutVault runs status without VAULT_ADDR, so that it does not compare
// the clusters' ca-crl.pem with Vault's CRLs: for checks of anything else,
// on hand-written cacerts that carry none.
var withoutVault = map[string]string{"VAULT_ADDR": ""}

func (c *cli) run(t *testing.T, args ...string) result {
	return c.runEnv(t, nil, args...)
}

func (c *cli) runEnv(t *testing.T, override map[string]string, args ...string) result {
	t.Helper()
	env := map[string]string{}
	for k, v := range c.env {
		env[k] = v
	}
	for k, v := range override {
		env[k] = v
	}
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	code := app.Main(ctx, args, app.Streams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut},
		app.WithGetenv(func(k string) string { return env[k] }))
	c.mu.Lock()
	c.all.Write(out.Bytes())
	c.all.Write(errOut.Bytes())
	c.mu.Unlock()
	r := result{code: code, stdout: out.String(), stderr: errOut.String()}
	t.Logf("meshtrust %s -> exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, r.stdout, r.stderr)
	return r
}

func (c *cli) printed() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.all.String()
}

// jwtPattern is a JSON Web Token in compact form: two base64url JSON
// objects ("eyJ" is the encoding of `{"`) and a signature, joined by dots.
// A bare "eyJ" is no sign of one: base64 text such as a printed root
// certificate holds it by chance (about one PEM in 2,500), and PEM has no
// dots.
var jwtPattern = regexp.MustCompile(`eyJ[A-Za-z0-9_-]*\.eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+`)

// leaks says what out gives away: any of secrets (by index and length,
// never the secret itself), a JWT or a private key.
func leaks(out string, secrets ...string) []string {
	var found []string
	for i, s := range secrets {
		if s != "" && strings.Contains(out, s) {
			found = append(found, fmt.Sprintf("secret %d (%d chars)", i, len(s)))
		}
	}
	if jwtPattern.MatchString(out) {
		found = append(found, "a JWT")
	}
	if strings.Contains(out, "PRIVATE KEY") {
		found = append(found, "a private key")
	}
	return found
}

// csr makes a P-256 key and a CSR for cn.
func csr(t *testing.T, cn string) (crypto.Signer, string) {
	t.Helper()
	key, req := pkitest.CSR(t, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}})
	return key, string(req)
}

// keyPEM is SEC1, as cert-manager writes an EC key by default.
func keyPEM(t *testing.T, key crypto.Signer) []byte {
	t.Helper()
	return pkitest.EncodeKey(t, key, pkitest.SEC1)
}

// signIntermediate calls sign-intermediate and returns the certificate.
func signIntermediate(ctx context.Context, c *vaultapi.Client, path string, data map[string]any) (*x509.Certificate, error) {
	s, err := c.Logical().WriteWithContext(ctx, path, data)
	if err != nil {
		return nil, err
	}
	if s == nil || s.Data == nil {
		return nil, fmt.Errorf("empty response")
	}
	text, _ := s.Data["certificate"].(string)
	certs, err := pki.DecodeCertificates([]byte(text), pki.MaxChainPEMSize)
	if err != nil {
		return nil, err
	}
	return certs[0], nil
}

// selfSignedRoot makes a root CA locally, unrelated to Vault.
func selfSignedRoot(t *testing.T, cn string) *pkitest.Cert {
	t.Helper()
	now := time.Now()
	return pkitest.New(t, now, pkitest.Spec{CN: cn, NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}, nil)
}

// testCA is a root and an intermediate made locally, unrelated to Vault:
// the "mismatched root" a cluster must not trust.
func testCA(t *testing.T, td string) (root, inter *pkitest.Cert) {
	t.Helper()
	root = selfSignedRoot(t, "rogue root")
	now := time.Now()
	inter = pkitest.New(t, now, pkitest.Spec{CN: "rogue intermediate", NotAfter: now.Add(12 * time.Hour),
		MaxPathLenZero: true, PermittedURIDomains: []string{td}, KeyUsage: x509.KeyUsageCertSign}, root)
	return root, inter
}

func istioData(t *testing.T, inter *x509.Certificate, key crypto.Signer, root *x509.Certificate) map[string][]byte {
	return map[string][]byte{
		pki.CACertKey:    pki.EncodeCertificates(inter),
		pki.CAKeyKey:     keyPEM(t, key),
		pki.CertChainKey: pki.EncodeCertificates(inter, root),
		pki.RootCertKey:  pki.EncodeCertificates(root),
	}
}

func tlsData(t *testing.T, inter *x509.Certificate, key crypto.Signer, root *x509.Certificate) map[string][]byte {
	return map[string][]byte{
		pki.TLSCertKey:      pki.EncodeCertificates(inter, root),
		pki.TLSKeyKey:       keyPEM(t, key),
		pki.CACertBundleKey: pki.EncodeCertificates(root),
	}
}

// putCacerts creates or replaces istio-system/cacerts; with a source it
// carries the syncer's marks.
func putCacerts(ctx context.Context, t *testing.T, cs kubernetes.Interface, data map[string][]byte, source ...string) {
	t.Helper()
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "istio-system"}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	secrets := cs.CoreV1().Secrets("istio-system")
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "cacerts", Namespace: "istio-system"}, Data: data}
	if len(source) > 0 {
		s.Labels = map[string]string{decision.ManagedByLabel: decision.ManagedByValue}
		s.Annotations = map[string]string{decision.SourceAnnotation: source[0]}
	}
	if _, err := secrets.Create(ctx, s, metav1.CreateOptions{}); apierrors.IsAlreadyExists(err) {
		if _, err := secrets.Update(ctx, s, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	} else if err != nil {
		t.Fatal(err)
	}
}

// TestLeaksTellsAJWTFromBase64 proves the leak check on both sides: a
// JWT is found, wherever it sits; base64 that holds "eyJ" by chance, as a
// printed root certificate may, is not.
func TestLeaksTellsAJWTFromBase64(t *testing.T) {
	b64 := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	jwt := b64(`{"alg":"RS256","kid":"k"}`) + "." + b64(`{"aud":["vault"],"sub":"system:serviceaccount:kube-system:r"}`) + "." + b64("signature bytes")
	pemWithEyJ := "-----BEGIN CERTIFICATE-----\nMIIBjTCCATOgAwIBAgIUeyJ0b2tlbiBub3QgYSB0b2tlbiBhdCBhbGwgYnV0IGJh\nc2U2NA==\n-----END CERTIFICATE-----\n"
	if got := leaks("token: " + jwt + "\n"); !slices.Equal(got, []string{"a JWT"}) {
		t.Errorf("a printed JWT: leaks = %v", got)
	}
	if got := leaks(`{"pem":"` + strings.ReplaceAll(pemWithEyJ, "\n", `\n`) + `"}`); len(got) != 0 {
		t.Errorf("a printed root certificate holding eyJ: leaks = %v, want none", got)
	}
	if got := leaks("s.abcdef and more", "s.abcdef", ""); !slices.Equal(got, []string{"secret 0 (8 chars)"}) {
		t.Errorf("a printed secret: leaks = %v", got)
	}
}
