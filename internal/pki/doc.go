// Package pki holds the certificate handling shared by meshtrust's syncer, CLI
// and issuer: size-capped PEM decoding, chain ordering, private-key parsing,
// an istiod-equivalent Verify, the Istio cacerts layouts and the root-bundle
// merge used during a root transition.
//
// Every function is stateless: the current time is always a parameter, and
// nothing here reads a clock, a file or the network. Errors from parsing and
// verification are *Error values that name the check that failed, the Secret
// key at fault and the offending value, so that callers can put them straight
// into events and conditions. Private-key material never appears in an error.
//
// The shape follows istiod (security/pkg/pki/util/keycertbundle.go Verify)
// and cert-manager (pkg/util/pki/parse_certificate_chain.go,
// internal/pem/decode.go), but the code is our own.
package pki
