package pki

import (
	"testing"
	"time"

	"github.com/meshtrust/meshtrust/internal/pki/pkitest"
)

// pkiSet is root -> intermediate.
type pkiSet struct {
	root, inter *pkitest.Cert
}

func newSet(t testing.TB, now time.Time) pkiSet {
	root := pkitest.New(t, now, pkitest.Spec{CN: "root", NotAfter: now.Add(365 * 24 * time.Hour)}, nil)
	inter := pkitest.New(t, now, pkitest.Spec{CN: "intermediate"}, root)
	return pkiSet{root: root, inter: inter}
}
