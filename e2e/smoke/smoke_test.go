// Package smoke proves the lab is real: every claim later tests make rests
// on a real Vault, real API servers and the real cert-manager controllers.
package smoke

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"slices"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"

	"github.com/meshtrust/meshtrust/e2e/lab"
)

var clusters = []string{"kind1", "kind2", "kind3"}

func TestLabIsReal(t *testing.T) {
	l := lab.New(t, lab.Options{Clusters: clusters, Vault: lab.VaultPersistent})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	vc, err := l.Vault.Client()
	if err != nil {
		t.Fatal(err)
	}

	t.Run("cert-manager issues in every cluster", func(t *testing.T) {
		for _, c := range l.Clusters {
			assertCertManagerIssues(ctx, t, c)
		}
	})

	t.Run("vault PKI signs a CSR", func(t *testing.T) {
		enableRootPKI(ctx, t, vc)
		assertVaultSignsIntermediate(ctx, t, vc)
	})

	t.Run("vault kubernetes auth trusts only its own cluster", func(t *testing.T) {
		kind1, kind2 := l.Cluster("kind1"), l.Cluster("kind2")
		if err := kind1.ConfigureVaultKubernetesAuth(ctx, vc, "kubernetes-kind1"); err != nil {
			t.Fatal(err)
		}
		if _, err := vc.Logical().WriteWithContext(ctx, "auth/kubernetes-kind1/role/meshtrust", map[string]any{
			"bound_service_account_names":      "meshtrust",
			"bound_service_account_namespaces": "meshtrust-system",
			"audience":                         "vault",
			"token_policies":                   "default",
			"token_ttl":                        "10m",
		}); err != nil {
			t.Fatalf("writing kubernetes auth role: %v", err)
		}
		own, err := kind1.ServiceAccountToken(ctx, "meshtrust-system", "meshtrust", []string{"vault"}, 10*time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		secret, err := kubernetesLogin(ctx, l.Vault.Addr, "kubernetes-kind1", own)
		if err != nil {
			t.Fatalf("login with a kind1 token: %v", err)
		}
		if secret.Auth == nil || secret.Auth.ClientToken == "" {
			t.Fatal("login with a kind1 token returned no client token")
		}
		foreign, err := kind2.ServiceAccountToken(ctx, "meshtrust-system", "meshtrust", []string{"vault"}, 10*time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := kubernetesLogin(ctx, l.Vault.Addr, "kubernetes-kind1", foreign); err == nil {
			t.Fatal("the kind1 auth mount accepted a token minted by kind2")
		}
	})

	t.Run("persistent vault keeps its PKI root across a restart", func(t *testing.T) {
		before := readRoot(ctx, t, vc)
		if err := l.Vault.Stop(ctx); err != nil {
			t.Fatalf("stopping vault: %v", err)
		}
		if _, err := vc.Sys().HealthWithContext(ctx); err == nil {
			t.Fatal("vault still answers after Stop")
		}
		if err := l.Vault.Start(ctx); err != nil {
			t.Fatalf("restarting vault: %v", err)
		}
		after := readRoot(ctx, t, vc)
		if !bytes.Equal(before, after) {
			t.Fatal("the PKI root changed across a restart")
		}
		assertVaultSignsIntermediate(ctx, t, vc)
	})
}

// assertCertManagerIssues runs a SelfSigned root, a CA issuer and a leaf
// through the real cert-manager controllers.
func assertCertManagerIssues(ctx context.Context, t *testing.T, c *lab.Cluster) {
	t.Helper()
	const ns = "smoke"
	if err := c.EnsureNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	objects := []client.Object{
		&cmapi.Issuer{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "selfsigned"},
			Spec:       cmapi.IssuerSpec{IssuerConfig: cmapi.IssuerConfig{SelfSigned: &cmapi.SelfSignedIssuer{}}},
		},
		&cmapi.Certificate{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "root"},
			Spec: cmapi.CertificateSpec{
				IsCA: true, CommonName: c.Name + " smoke root", SecretName: "root",
				PrivateKey: &cmapi.CertificatePrivateKey{Algorithm: cmapi.ECDSAKeyAlgorithm, Size: 256},
				IssuerRef:  cmmeta.IssuerReference{Name: "selfsigned", Kind: "Issuer"},
			},
		},
		&cmapi.Issuer{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "ca"},
			Spec:       cmapi.IssuerSpec{IssuerConfig: cmapi.IssuerConfig{CA: &cmapi.CAIssuer{SecretName: "root"}}},
		},
		&cmapi.Certificate{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "leaf"},
			Spec: cmapi.CertificateSpec{
				DNSNames: []string{"leaf.smoke.svc"}, SecretName: "leaf",
				PrivateKey: &cmapi.CertificatePrivateKey{Algorithm: cmapi.ECDSAKeyAlgorithm, Size: 256},
				IssuerRef:  cmmeta.IssuerReference{Name: "ca", Kind: "Issuer"},
			},
		},
	}
	for _, o := range objects {
		if err := c.Client.Create(ctx, o); err != nil {
			t.Fatalf("cluster %s: creating %T %s: %v", c.Name, o, o.GetName(), err)
		}
	}
	for _, name := range []string{"root", "leaf"} {
		lab.Eventually(t, 2*time.Minute, fmt.Sprintf("Certificate %s/%s Ready in %s", ns, name, c.Name), func(ctx context.Context) error {
			var crt cmapi.Certificate
			if err := c.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &crt); err != nil {
				return err
			}
			for _, cond := range crt.Status.Conditions {
				if cond.Type == cmapi.CertificateConditionReady && cond.Status == cmmeta.ConditionTrue {
					return nil
				}
			}
			return fmt.Errorf("not Ready: %+v", crt.Status.Conditions)
		})
	}
	var secret corev1.Secret
	if err := c.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "leaf"}, &secret); err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(secret.Data[corev1.TLSCertKey], secret.Data[corev1.TLSPrivateKeyKey])
	if err != nil {
		t.Fatalf("cluster %s: the leaf Secret holds no valid key pair: %v", c.Name, err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(secret.Data[cmmeta.TLSCAKey]) {
		t.Fatalf("cluster %s: the leaf Secret's ca.crt holds no certificate", c.Name)
	}
	if _, err := pair.Leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: "leaf.smoke.svc"}); err != nil {
		t.Fatalf("cluster %s: the leaf does not verify against its CA: %v", c.Name, err)
	}
}

func enableRootPKI(ctx context.Context, t *testing.T, vc *vaultapi.Client) {
	t.Helper()
	if err := vc.Sys().MountWithContext(ctx, "pki", &vaultapi.MountInput{
		Type: "pki", Config: vaultapi.MountConfigInput{MaxLeaseTTL: "87600h"},
	}); err != nil {
		t.Fatalf("enabling PKI: %v", err)
	}
	if _, err := vc.Logical().WriteWithContext(ctx, "pki/root/generate/internal", map[string]any{
		"common_name": "smoke root", "key_type": "ec", "key_bits": 256, "ttl": "87600h",
	}); err != nil {
		t.Fatalf("generating the root: %v", err)
	}
}

func assertVaultSignsIntermediate(ctx context.Context, t *testing.T, vc *vaultapi.Client) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "kind2 intermediate"}}, key)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := vc.Logical().WriteWithContext(ctx, "pki/root/sign-intermediate", map[string]any{
		"csr":                   string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})),
		"common_name":           "kind2 intermediate",
		"ttl":                   "24h",
		"max_path_length":       0,
		"permitted_uri_domains": "kind2",
	})
	if err != nil {
		t.Fatalf("signing an intermediate: %v", err)
	}
	cert := parseCert(t, resp.Data["certificate"].(string))
	if !cert.IsCA || !cert.MaxPathLenZero || !slices.Equal(cert.PermittedURIDomains, []string{"kind2"}) {
		t.Fatalf("intermediate: IsCA=%v MaxPathLenZero=%v PermittedURIDomains=%v", cert.IsCA, cert.MaxPathLenZero, cert.PermittedURIDomains)
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		t.Fatal("the signed intermediate does not carry the CSR's public key")
	}
	root := parseCert(t, string(readRoot(ctx, t, vc)))
	if err := cert.CheckSignatureFrom(root); err != nil {
		t.Fatalf("the intermediate is not signed by the root: %v", err)
	}
}

func readRoot(ctx context.Context, t *testing.T, vc *vaultapi.Client) []byte {
	t.Helper()
	resp, err := vc.Logical().ReadWithContext(ctx, "pki/cert/ca")
	if err != nil || resp == nil {
		t.Fatalf("reading the PKI root: %v", err)
	}
	return []byte(resp.Data["certificate"].(string))
}

func parseCert(t *testing.T, p string) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode([]byte(p))
	if block == nil {
		t.Fatalf("no PEM block in %q", p)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// kubernetesLogin logs in with a fresh, tokenless client, as a workload would.
func kubernetesLogin(ctx context.Context, addr, mount, jwt string) (*vaultapi.Secret, error) {
	cfg := vaultapi.DefaultConfig()
	cfg.Address = addr
	c, err := vaultapi.NewClient(cfg)
	if err != nil {
		return nil, err
	}
	c.ClearToken()
	return c.Logical().WriteWithContext(ctx, "auth/"+mount+"/login", map[string]any{"role": "meshtrust", "jwt": jwt})
}
