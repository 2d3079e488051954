package istio

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"sync"
	"time"

	securityv1alpha1 "istio.io/api/security/v1alpha1"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/meshtrust/meshtrust/internal/pki"
)

// tokenLifetime is the lifetime of the agent's ServiceAccount token; it is
// renewed at 80% of it, as kubelet renews a projected token.
const tokenLifetime = time.Hour

// AgentConfig says which workload an Agent speaks for and where its
// cluster's istiod is.
type AgentConfig struct {
	// Kube is the workload's cluster: it mints the token and holds the
	// istio-ca-root-cert ConfigMap.
	Kube kubernetes.Interface
	// CAAddr is istiod's CA, host:port (its secure gRPC address).
	CAAddr string
	// ClusterID is the cluster's ID as its istiod knows it (CLUSTER_ID).
	ClusterID string
	// TrustDomain is the mesh config's trust domain; the CSR asks for the
	// SPIFFE ID in it (istiod signs the ID it derives from the token).
	TrustDomain string
	// Namespace and ServiceAccount are the workload's; the ServiceAccount
	// is created if it does not exist, as a Deployment's author would.
	Namespace, ServiceAccount string
	// TTL is the lifetime asked for; zero means one hour.
	TTL time.Duration
}

// Agent gets workload certificates from istiod the way the Istio agent does
// for its pod: a key and CSR made locally (ECDSA P-256, as the agent with
// ECC_SIGNATURE_ALGORITHM=ECDSA), a ServiceAccount token with audience
// istio-ca from the TokenRequest API, and IstioCertificateService/
// CreateCertificate over TLS, istiod verified against the bundle it
// published in the istio-ca-root-cert ConfigMap of the workload's namespace
// and by the name istiod.istio-system.svc. It keeps one connection, rebuilt
// (re-reading that bundle) after a failed call, as the agent's CA client
// does.
type Agent struct {
	cfg AgentConfig

	mu           sync.Mutex
	conn         *grpc.ClientConn
	token        string
	tokenRenewAt time.Time
}

// NewAgent returns an agent for cfg; it connects on first use.
func NewAgent(cfg AgentConfig) *Agent {
	if cfg.TTL == 0 {
		cfg.TTL = time.Hour
	}
	return &Agent{cfg: cfg}
}

// ID is the workload's SPIFFE ID.
func (a *Agent) ID() string {
	return SPIFFEID(a.cfg.TrustDomain, a.cfg.Namespace, a.cfg.ServiceAccount)
}

// SPIFFEID returns spiffe://<trustDomain>/ns/<namespace>/sa/<serviceAccount>.
func SPIFFEID(trustDomain, namespace, serviceAccount string) string {
	return fmt.Sprintf("spiffe://%s/ns/%s/sa/%s", trustDomain, namespace, serviceAccount)
}

// Identity is a workload certificate as the agent hands it to Envoy.
type Identity struct {
	// Cert is the leaf and the intermediates istiod returned (its
	// cert-chain.pem), with the workload's key; Cert.Leaf is set.
	Cert tls.Certificate
	// Intermediates are the CA certificates after the leaf, in order.
	Intermediates []*x509.Certificate
	// RootsPEM is the last element of the reply: istiod's root bundle.
	RootsPEM []byte
}

// Certificate gets a new workload certificate from istiod.
func (a *Agent) Certificate(ctx context.Context) (*Identity, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating the workload key: %w", err)
	}
	id, err := url.Parse(a.ID())
	if err != nil {
		return nil, fmt.Errorf("workload identity %q: %w", a.ID(), err)
	}
	csrDER, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{id}}, key)
	if err != nil {
		return nil, fmt.Errorf("creating the CSR: %w", err)
	}
	token, err := a.serviceAccountToken(ctx)
	if err != nil {
		return nil, err
	}
	client, err := a.client(ctx)
	if err != nil {
		return nil, err
	}
	callCtx := metadata.AppendToOutgoingContext(ctx, ClusterIDMetadata, a.cfg.ClusterID, "authorization", "Bearer "+token)
	resp, err := client.CreateCertificate(callCtx, &securityv1alpha1.IstioCertificateRequest{
		Csr:              string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csrDER})),
		ValidityDuration: int64(a.cfg.TTL / time.Second),
	})
	if err != nil {
		a.reset()
		return nil, fmt.Errorf("istiod %s (cluster %s): CreateCertificate for %s: %w", a.cfg.CAAddr, a.cfg.ClusterID, a.ID(), err)
	}
	return identityFrom(resp.GetCertChain(), key)
}

// identityFrom reads CreateCertificate's reply: the leaf first, then the
// chain, the root bundle last.
func identityFrom(chain []string, key *ecdsa.PrivateKey) (*Identity, error) {
	if len(chain) < 2 {
		return nil, fmt.Errorf("istiod returned %d certificates, want a leaf and at least the roots", len(chain))
	}
	var certs []*x509.Certificate
	for n, p := range chain[:len(chain)-1] {
		cs, err := pki.DecodeCertificates([]byte(p), pki.MaxChainPEMSize)
		if err != nil || len(cs) != 1 {
			return nil, fmt.Errorf("istiod's reply, element %d: want one certificate (%d, %v)", n, len(cs), err)
		}
		certs = append(certs, cs[0])
	}
	leaf := certs[0]
	if pub, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok || !pub.Equal(&key.PublicKey) {
		return nil, errors.New("istiod's certificate is not for the key of the CSR")
	}
	rootsPEM := []byte(chain[len(chain)-1])
	if _, err := pki.DecodeCertificates(rootsPEM, pki.MaxRootBundlePEMSize); err != nil {
		return nil, fmt.Errorf("istiod's reply, root bundle: %w", err)
	}
	raw := make([][]byte, len(certs))
	for n, c := range certs {
		raw[n] = c.Raw
	}
	return &Identity{
		Cert:          tls.Certificate{Certificate: raw, PrivateKey: key, Leaf: leaf},
		Intermediates: certs[1:],
		RootsPEM:      rootsPEM,
	}, nil
}

// serviceAccountToken returns a token for the workload's ServiceAccount
// with audience istio-ca, minting a new one when the last is 80% through its
// life.
func (a *Agent) serviceAccountToken(ctx context.Context) (string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.token != "" && time.Now().Before(a.tokenRenewAt) {
		return a.token, nil
	}
	ns, name := a.cfg.Namespace, a.cfg.ServiceAccount
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	if _, err := a.cfg.Kube.CoreV1().ServiceAccounts(ns).Create(ctx, sa, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return "", fmt.Errorf("creating ServiceAccount %s/%s in %s: %w", ns, name, a.cfg.ClusterID, err)
	}
	seconds := int64(tokenLifetime / time.Second)
	tr, err := a.cfg.Kube.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{Audiences: []string{CAAudience}, ExpirationSeconds: &seconds},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("requesting a %s token for ServiceAccount %s/%s in %s: %w", CAAudience, ns, name, a.cfg.ClusterID, err)
	}
	a.token, a.tokenRenewAt = tr.Status.Token, time.Now().Add(tokenLifetime*8/10)
	return a.token, nil
}

// client returns the connection to istiod, dialling it with the bundle
// istiod currently publishes in the workload's namespace.
func (a *Agent) client(ctx context.Context) (securityv1alpha1.IstioCertificateServiceClient, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.conn == nil {
		roots, err := PublishedRoots(ctx, a.cfg.Kube, a.cfg.Namespace)
		if err != nil {
			return nil, err
		}
		creds := credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS12, RootCAs: roots.Pool, ServerName: ServerName})
		conn, err := grpc.NewClient(a.cfg.CAAddr, grpc.WithTransportCredentials(creds))
		if err != nil {
			return nil, fmt.Errorf("connecting to istiod %s: %w", a.cfg.CAAddr, err)
		}
		a.conn = conn
	}
	return securityv1alpha1.NewIstioCertificateServiceClient(a.conn), nil
}

func (a *Agent) reset() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.conn != nil {
		a.conn.Close()
		a.conn = nil
	}
}

// Close closes the connection to istiod.
func (a *Agent) Close() {
	a.reset()
}
