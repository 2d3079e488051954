package istio

import (
	"context"
	"crypto/x509"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/meshtrust/meshtrust/internal/pki"
)

// Bundle is a trust bundle istiod published.
type Bundle struct {
	// PEM is the ConfigMap's root-cert.pem as istiod wrote it.
	PEM   []byte
	Certs []*x509.Certificate
	Pool  *x509.CertPool
}

// PublishedRoots reads the trust bundle istiod published in namespace's
// istio-ca-root-cert ConfigMap: what a pod there mounts to verify istiod
// and its peers.
func PublishedRoots(ctx context.Context, kube kubernetes.Interface, namespace string) (*Bundle, error) {
	cm, err := kube.CoreV1().ConfigMaps(namespace).Get(ctx, RootCertConfigMap, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("reading ConfigMap %s/%s: %w", namespace, RootCertConfigMap, err)
	}
	b, err := ParseBundle([]byte(cm.Data[RootCertKey]))
	if err != nil {
		return nil, fmt.Errorf("ConfigMap %s/%s: %w", namespace, RootCertConfigMap, err)
	}
	return b, nil
}

// ParseBundle reads a PEM root bundle.
func ParseBundle(pemBytes []byte) (*Bundle, error) {
	certs, err := pki.DecodeCertificates(pemBytes, pki.MaxRootBundlePEMSize)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", RootCertKey, err)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("%s holds no certificate", RootCertKey)
	}
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	return &Bundle{PEM: pemBytes, Certs: certs, Pool: pool}, nil
}

// PublishedCRL reads the CRL istiod published in namespace's istio-ca-crl
// ConfigMap (the ca-crl.pem of its cacerts), as PEM.
func PublishedCRL(ctx context.Context, kube kubernetes.Interface, namespace string) ([]byte, error) {
	cm, err := kube.CoreV1().ConfigMaps(namespace).Get(ctx, CRLConfigMap, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("reading ConfigMap %s/%s: %w", namespace, CRLConfigMap, err)
	}
	crl, ok := cm.Data[CRLKey]
	if !ok {
		return nil, fmt.Errorf("ConfigMap %s/%s has no %s", namespace, CRLConfigMap, CRLKey)
	}
	return []byte(crl), nil
}
