package pki

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
)

// PEM block types istiod accepts for its signing key (ParsePemEncodedKey).
const (
	blockRSAPrivateKey   = "RSA PRIVATE KEY" // PKCS#1
	blockECPrivateKey    = "EC PRIVATE KEY"  // SEC1
	blockPKCS8PrivateKey = "PRIVATE KEY"     // PKCS#8
)

// PrivateKey is a parsed signing key together with its canonical PEM form.
type PrivateKey struct {
	// Signer is the parsed key.
	Signer crypto.Signer
	// PEM is the single key block re-encoded without headers or surrounding
	// data; it is what the syncer writes.
	PEM []byte
}

// ParsePrivateKey parses exactly one PEM block holding a PKCS#1, SEC1 or
// PKCS#8 private key, as istiod does. Errors never include key bytes.
func ParsePrivateKey(data []byte) (*PrivateKey, error) {
	if len(data) > MaxPrivateKeyPEMSize {
		return nil, &Error{Check: CheckSize, Value: fmt.Sprintf("%d bytes", len(data)), Err: ErrTooLarge{Size: len(data), Max: MaxPrivateKeyPEMSize}}
	}
	block, rest := pem.Decode(data)
	if block == nil {
		return nil, &Error{Check: CheckPrivateKey, Value: "no PEM block", Err: ErrNoPEMData}
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, &Error{Check: CheckPrivateKey, Value: "data after the key block", Err: errors.New("want exactly one PEM block")}
	}
	if len(block.Headers) != 0 {
		// Encrypted PEM (Proc-Type/DEK-Info) is not something istiod can load.
		return nil, &Error{Check: CheckPrivateKey, Value: "PEM headers present", Err: errors.New("encrypted or annotated keys are not supported")}
	}
	var (
		key any
		err error
	)
	switch block.Type {
	case blockRSAPrivateKey:
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case blockECPrivateKey:
		key, err = x509.ParseECPrivateKey(block.Bytes)
	case blockPKCS8PrivateKey:
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	default:
		return nil, &Error{Check: CheckPrivateKey, Value: fmt.Sprintf("block type %q", block.Type), Err: errors.New("want RSA PRIVATE KEY, EC PRIVATE KEY or PRIVATE KEY")}
	}
	if err != nil {
		// The x509 parse errors describe structure, never key material.
		return nil, &Error{Check: CheckPrivateKey, Value: fmt.Sprintf("block type %q", block.Type), Err: err}
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, &Error{Check: CheckPrivateKey, Value: fmt.Sprintf("%T", key), Err: errors.New("key type cannot sign")}
	}
	return &PrivateKey{
		Signer: signer,
		PEM:    pem.EncodeToMemory(&pem.Block{Type: block.Type, Bytes: block.Bytes}),
	}, nil
}

// KeyMatchesCertificate reports whether key is the private half of cert's
// public key.
func KeyMatchesCertificate(key crypto.Signer, cert *x509.Certificate) error {
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(cert.PublicKey) {
		return &Error{Check: CheckKeyMatch, Value: fmt.Sprintf("key %s does not match certificate %q", keyType(key), cert.Subject.String())}
	}
	return nil
}

func keyType(k crypto.Signer) string {
	switch k := k.Public().(type) {
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA-%d", k.N.BitLen())
	case *ecdsa.PublicKey:
		return "ECDSA-" + k.Curve.Params().Name
	case ed25519.PublicKey:
		return "Ed25519"
	}
	return fmt.Sprintf("%T", k)
}
