// Package revocation proves, on the real lab (Vault, cert-manager and a real
// istiod in each cluster), that revoking a cluster's intermediate reaches
// the data plane: the CRL travels from Vault through meshtrust's issuer and
// syncer into every cluster's cacerts, istiod publishes it in istio-ca-crl,
// and a verifier that checks CRLs the way Envoy does refuses the revoked
// cluster's workloads while the others keep talking, through renewals too.
// It also proves that bad CRL input never reaches cacerts.
//
// The package has no product code.
package revocation
