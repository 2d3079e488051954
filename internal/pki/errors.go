package pki

import (
	"errors"
	"fmt"
)

// Check names one step of parsing or verification. Its string form is stable
// and meant for events, conditions and metric labels.
type Check string

// The checks, in the order Verify and the parsers run them.
const (
	CheckLayout      Check = "layout"
	CheckMissing     Check = "missing-key"
	CheckSize        Check = "size"
	CheckPEM         Check = "pem"
	CheckCertificate Check = "certificate-parse"
	CheckChainOrder  Check = "chain-order"
	CheckPrivateKey  Check = "private-key"
	CheckRoots       Check = "roots"
	CheckKeyMatch    Check = "key-match"
	CheckIsCA        Check = "is-ca"
	CheckNotYetValid Check = "not-yet-valid"
	CheckExpired     Check = "expired"
	CheckKeyUsage    Check = "key-usage"
	CheckChainVerify Check = "chain-verify"
	CheckLifetime    Check = "remaining-lifetime"

	// CRL checks (crl.go).
	CheckCRLSize      Check = "crl-size"
	CheckCRLPEM       Check = "crl-pem"
	CheckCRLParse     Check = "crl-parse"
	CheckCRLIssuer    Check = "crl-issuer"
	CheckCRLExpired   Check = "crl-expired"
	CheckCRLTime      Check = "crl-time"
	CheckCRLExtension Check = "crl-extension"
	CheckCRLNumber    Check = "crl-number"
	CheckCRLCoverage  Check = "crl-coverage"
)

// Error reports which check failed, on which Secret key, and the value that
// failed it. Value never contains private-key material.
type Error struct {
	// Check is the failed step.
	Check Check
	// Field is the Secret key at fault (e.g. "tls.crt"); empty when the check
	// spans several keys.
	Field string
	// Value describes the offending value (a subject, a time, a size).
	Value string
	// Err is the underlying cause, if any.
	Err error
}

func (e *Error) Error() string {
	s := "check " + string(e.Check) + " failed"
	if e.Field != "" {
		s += " on " + e.Field
	}
	if e.Value != "" {
		s += " (" + e.Value + ")"
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// CheckOf returns the Check named by the first *Error in err's chain, or "".
func CheckOf(err error) Check {
	var e *Error
	if errors.As(err, &e) {
		return e.Check
	}
	return ""
}

var (
	// ErrNoPEMData means the input held no PEM block at all.
	ErrNoPEMData     = errors.New("no PEM data found")
	errUnknownLayout = errors.New(`unknown layout, want "istio" or "tls"`)
)

// ErrTooLarge is returned when input exceeds a size cap.
type ErrTooLarge struct {
	Size, Max int
}

func (e ErrTooLarge) Error() string {
	return fmt.Sprintf("%d bytes exceeds the maximum of %d bytes", e.Size, e.Max)
}

func withField(err error, field string) error {
	var e *Error
	if errors.As(err, &e) && e.Field == "" {
		c := *e
		c.Field = field
		return &c
	}
	return err
}
