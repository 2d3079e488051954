package issuer

import (
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/cert-manager/issuer-lib/controllers/signer"

	"github.com/meshtrust/meshtrust/internal/vaultcontract"
	"github.com/meshtrust/meshtrust/issuer/api/v1alpha1"
)

// FieldError is bad input attributed to one field, so that conditions,
// events and logs can name it.
type FieldError struct {
	// Field is the path of the field at fault, e.g. spec.pki.role or
	// spec.request.
	Field string
	// Err says what is wrong with it.
	Err error
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Err.Error() }
func (e *FieldError) Unwrap() error { return e.Err }

func fieldErr(field string, format string, args ...any) error {
	return &FieldError{Field: field, Err: fmt.Errorf(format, args...)}
}

// SignInput is what a Vault sign call is built from.
type SignInput struct {
	// Spec is the issuer's spec.
	Spec *v1alpha1.VaultIssuerSpec
	// CSR is the PEM request as submitted.
	CSRPEM []byte
	// CSR is the parsed and checked request.
	CSR *x509.CertificateRequest
	// IsCA asks for an intermediate CA.
	IsCA bool
	// Duration is the requested lifetime.
	Duration time.Duration
}

// SignRequestFor is the issuer's whole request builder: it parses and checks
// the CSR of a CertificateRequest or Kubernetes CSR and maps it onto the
// Vault call. A refusal is a *FieldError naming the field at fault.
func SignRequestFor(spec *v1alpha1.VaultIssuerSpec, details signer.CertificateDetails) (vaultcontract.SignRequest, *x509.CertificateRequest, error) {
	csr, err := ParseCSR(details.CSR)
	if err != nil {
		return vaultcontract.SignRequest{}, nil, &FieldError{Field: "spec.request", Err: err}
	}
	req, err := BuildSignRequest(SignInput{Spec: spec, CSRPEM: details.CSR, CSR: csr, IsCA: details.IsCA, Duration: details.Duration})
	return req, csr, err
}

// BuildSignRequest maps a checked request onto a Vault call: CA requests to
// sign-intermediate with the trust-domain name constraint and path length,
// others to sign/<role>. It refuses what the issuer is not configured for.
func BuildSignRequest(in SignInput) (vaultcontract.SignRequest, error) {
	spec, csr := in.Spec, in.CSR
	mount := spec.PKI.Mount
	if mount == "" {
		mount = vaultcontract.DefaultMount
	}
	req := vaultcontract.SignRequest{
		Mount:      mount,
		IssuerRef:  spec.PKI.IssuerRef,
		CA:         in.IsCA,
		CSR:        in.CSRPEM,
		CommonName: csr.Subject.CommonName,
		TTL:        in.Duration,
	}
	req.AltNames = append(append(req.AltNames, csr.DNSNames...), csr.EmailAddresses...)
	for _, ip := range csr.IPAddresses {
		req.IPSANs = append(req.IPSANs, ip.String())
	}
	for _, u := range csr.URIs {
		req.URISANs = append(req.URISANs, u.String())
	}
	var trustDomain string
	if spec.Intermediate != nil {
		trustDomain = spec.Intermediate.TrustDomain
	}
	if !in.IsCA {
		if spec.PKI.Role == "" {
			return req, fieldErr("spec.pki.role", "is empty, so this issuer cannot sign non-CA requests")
		}
		if err := CheckLeafURIs(csr.URIs, trustDomain); err != nil {
			return req, &FieldError{Field: "spec.request", Err: err}
		}
		req.Role = spec.PKI.Role
		return req, nil
	}
	if trustDomain == "" {
		return req, fieldErr("spec.intermediate.trustDomain", "is empty, so this issuer refuses CA requests: an intermediate without a trust-domain name constraint could mint any identity")
	}
	if err := CheckCAURIs(csr.URIs, trustDomain); err != nil {
		return req, &FieldError{Field: "spec.request", Err: err}
	}
	// An intermediate's only names are its trust domain: DNS, IP or email
	// SANs would not be constrained by it, and the enrolment policy does
	// not allow them, so Vault would refuse the request on every retry.
	if n := len(csr.DNSNames) + len(csr.IPAddresses) + len(csr.EmailAddresses); n > 0 {
		return req, &FieldError{Field: "spec.request", Err: fmt.Errorf("the CSR for an intermediate carries %d DNS, IP or email names (%s); an intermediate is named only by its trust domain's SPIFFE URI: remove dnsNames, ipAddresses and emailAddresses from the Certificate", n, caOtherNames(csr))}
	}
	if req.CommonName == "" {
		return req, &FieldError{Field: "spec.request", Err: errors.New("the CSR has no common name, which Vault's sign-intermediate requires; set commonName on the Certificate")}
	}
	req.MaxPathLength = int(spec.Intermediate.MaxPathLength)
	req.PermittedURIDomains = []string{trustDomain}
	return req, nil
}

func caOtherNames(csr *x509.CertificateRequest) string {
	names := append(append([]string{}, csr.DNSNames...), csr.EmailAddresses...)
	for _, ip := range csr.IPAddresses {
		names = append(names, ip.String())
	}
	return strings.Join(names, ", ")
}
