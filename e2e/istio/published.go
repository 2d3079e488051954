package istio

import (
	"context"
	"crypto/x509"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
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

// PublishedCRLs reads and parses the CRLs istiod published in namespace's
// istio-ca-crl: what a proxy there checks its peers against. None (no
// ConfigMap, or an empty one) means the proxy checks no CRL.
func PublishedCRLs(ctx context.Context, kube kubernetes.Interface, namespace string) ([]*x509.RevocationList, error) {
	text, err := PublishedCRL(ctx, kube, namespace)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	crls, err := pki.DecodeCRLs(text, pki.MaxCRLBundlePEMSize)
	if err != nil {
		return nil, fmt.Errorf("ConfigMap %s/%s: %w", namespace, CRLConfigMap, err)
	}
	return crls, nil
}

// ProxyTrust is what a proxy in a namespace checks its peers against, as
// istiod published it: the trust bundle and the CRLs (none: no CRL check).
type ProxyTrust struct {
	Roots *Bundle
	CRLs  []*x509.RevocationList
}

// PublishedTrust reads both of namespace's ConfigMaps.
func PublishedTrust(ctx context.Context, kube kubernetes.Interface, namespace string) (*ProxyTrust, error) {
	roots, err := PublishedRoots(ctx, kube, namespace)
	if err != nil {
		return nil, err
	}
	crls, err := PublishedCRLs(ctx, kube, namespace)
	if err != nil {
		return nil, err
	}
	return &ProxyTrust{Roots: roots, CRLs: crls}, nil
}
