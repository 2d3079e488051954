package issuer

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"net/url"
	"testing"
	"time"

	"github.com/meshtrust/meshtrust/internal/pki/pkitest"
)

// newCert signs a certificate for key with parent (nil: self-signed), valid
// for life from notBefore.
func newCert(t testing.TB, cn string, isCA bool, key crypto.Signer, parent *pkitest.Cert, notBefore time.Time, life time.Duration) *pkitest.Cert {
	t.Helper()
	return pkitest.New(t, notBefore, pkitest.Spec{CN: cn, NotCA: !isCA, Key: key, NotBefore: notBefore, NotAfter: notBefore.Add(life)}, parent)
}

func weakRSAKey(t testing.TB) *rsa.PrivateKey {
	t.Helper()
	//nolint:gosec // deliberately weak: the test checks it is refused.
	k, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mustURLs(t testing.TB, ss ...string) []*url.URL {
	t.Helper()
	var out []*url.URL
	for _, s := range ss {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, u)
	}
	return out
}
