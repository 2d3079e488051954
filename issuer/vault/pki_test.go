package vault

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/meshtrust/meshtrust/internal/pki"
)

// testCertPEM is a throwaway self-signed certificate built at init time for
// the fake Vault's answers.
var testCertPEM = func() string {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test"},
		NotBefore: time.Unix(1_800_000_000, 0), NotAfter: time.Unix(2_000_000_000, 0),
		BasicConstraintsValid: true, IsCA: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		panic(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}()

// decodePEM is internal/pki's decoder with the issuer's own size cap, and
// an empty field (an absent ca_chain) holds no certificate rather than
// being an error.
func TestDecodePEM(t *testing.T) {
	tests := []struct {
		name      string
		in        string
		want      int
		wantCheck pki.Check
	}{
		{name: "empty", in: ""},
		{name: "blank", in: "\n "},
		{name: "one", in: testCertPEM, want: 1},
		{name: "two", in: testCertPEM + testCertPEM, want: 2},
		{name: "key block", in: "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", wantCheck: pki.CheckPEM},
		{name: "trailing garbage", in: testCertPEM + "garbage", wantCheck: pki.CheckPEM},
		{name: "oversized", in: strings.Repeat("a", maxResponsePEMSize+1), wantCheck: pki.CheckSize},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			certs, err := decodePEM([]byte(tc.in))
			if pki.CheckOf(err) != tc.wantCheck || (tc.wantCheck != "" && err == nil) {
				t.Fatalf("error = %v, want check %q", err, tc.wantCheck)
			}
			if len(certs) != tc.want {
				t.Fatalf("got %d certs, want %d", len(certs), tc.want)
			}
		})
	}
}

func TestDecodeSignData(t *testing.T) {
	tests := []struct {
		name      string
		data      map[string]any
		wantChain int
		wantErr   string
	}{
		{name: "ca_chain list", data: map[string]any{"certificate": testCertPEM, "ca_chain": []any{testCertPEM}}, wantChain: 1},
		{name: "issuing_ca fallback", data: map[string]any{"certificate": testCertPEM, "issuing_ca": testCertPEM}, wantChain: 1},
		{name: "truncated certificate", data: map[string]any{"certificate": testCertPEM[:len(testCertPEM)/2]}, wantErr: "certificate"},
		{name: "missing certificate", data: map[string]any{}, wantErr: "holds no certificate"},
		{name: "ca_chain of numbers", data: map[string]any{"certificate": testCertPEM, "ca_chain": []any{1}}, wantErr: "ca_chain"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := decodeSignData(tc.data)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || len(resp.CAChain) != tc.wantChain {
				t.Fatalf("chain %d, err %v", len(resp.CAChain), err)
			}
		})
	}
}

func TestErrorClasses(t *testing.T) {
	tests := []struct {
		code                          int
		denied, unavailable, rejected bool
	}{
		{code: 0, unavailable: true},
		{code: 400, rejected: true},
		{code: 403, denied: true},
		{code: 404, rejected: true},
		{code: 412, unavailable: true},
		{code: 429, unavailable: true},
		{code: 500, unavailable: true},
		{code: 503, unavailable: true},
	}
	for _, tc := range tests {
		err := error(&Error{Op: "sign", StatusCode: tc.code})
		if IsPermissionDenied(err) != tc.denied || IsUnavailable(err) != tc.unavailable || IsRejected(err) != tc.rejected {
			t.Errorf("code %d: denied=%v unavailable=%v rejected=%v", tc.code, IsPermissionDenied(err), IsUnavailable(err), IsRejected(err))
		}
	}
}
