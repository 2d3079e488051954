package vaultadmin

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"time"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/meshtrust/meshtrust/internal/pki"
)

// BootstrapOptions says how to set up the shared root.
type BootstrapOptions struct {
	// Mount is the PKI mount path, e.g. "pki".
	Mount string
	// IssuerName names the root issuer inside the mount; a second run finds
	// the root by this name and leaves it alone.
	IssuerName string
	// CommonName is the root certificate's subject CN.
	CommonName string
	// KeyType is "ec", "rsa" or "ed25519".
	KeyType string
	// KeyBits is the key size; 0 means 256 for ec and 2048 for rsa.
	KeyBits int
	// TTL is the root's lifetime. The mount's max lease TTL is raised to it
	// for the one call that generates the root, and restored after it.
	TTL time.Duration
	// MaxIntermediateTTL is the mount's max lease TTL once the root exists:
	// Vault silently cuts every intermediate to it, whatever TTL is asked.
	MaxIntermediateTTL time.Duration
	// URLBase (--url-base) is the externally reachable Vault address that
	// certificates advertise in their AIA and CRL URLs. When set, the
	// mount's URL settings are made to match it. When empty, settings the
	// mount already has are left alone: the address the operator happens to
	// reach Vault by (a port-forward, localhost) must not end up in every
	// later intermediate.
	URLBase string
	// DefaultURLBase is used instead of URLBase only where the mount has no
	// URL settings yet; the CLI passes the Vault address.
	DefaultURLBase string
	// AdoptIssuer, when set, names an existing root issuer in the mount to use
	// instead of generating one.
	AdoptIssuer string
	// ImportPEM, when set, is a PEM bundle (root certificate and its key) to
	// import instead of generating a root. The key then has existed outside
	// Vault; generating inside Vault is the default for that reason.
	ImportPEM []byte
	// SetDefault makes the root the mount's default issuer.
	SetDefault bool
	// CRLExpiry is how long each CRL Vault builds is valid (config/crl
	// expiry); zero means DefaultCRLExpiry.
	CRLExpiry time.Duration
	// CRLRebuildGrace is how long before expiry Vault rebuilds a CRL
	// (auto_rebuild_grace_period); zero means DefaultCRLRebuildGrace.
	CRLRebuildGrace time.Duration
}

// Validate checks the options before anything is sent to Vault.
func (o BootstrapOptions) Validate() error {
	switch {
	case o.Mount == "" || strings.Trim(o.Mount, "/") != o.Mount:
		return fmt.Errorf("invalid --mount %q: want a path such as pki, without leading or trailing slash", o.Mount)
	case o.AdoptIssuer != "" && len(o.ImportPEM) > 0:
		return fmt.Errorf("--adopt-issuer and --import-pem exclude each other")
	case o.MaxIntermediateTTL <= 0:
		return fmt.Errorf("invalid --max-intermediate-ttl %s: must be positive", o.MaxIntermediateTTL)
	case o.AdoptIssuer == "" && len(o.ImportPEM) == 0 && o.TTL <= o.MaxIntermediateTTL:
		// An intermediate cannot outlive its root; Vault would refuse to
		// sign one that asks for the full max TTL near the root's end.
		return fmt.Errorf("invalid --ttl %s: the root must outlive --max-intermediate-ttl %s", o.TTL, o.MaxIntermediateTTL)
	}
	if o.crlExpiry() <= o.crlRebuildGrace() {
		return fmt.Errorf("invalid --crl-rebuild-grace %s: must be shorter than --crl-expiry %s, or Vault would rebuild the CRL all the time", Dur(o.crlRebuildGrace()), Dur(o.crlExpiry()))
	}
	if o.URLBase != "" {
		if err := checkURLBase(o.URLBase); err != nil {
			return fmt.Errorf("invalid --url-base %q: %w", o.URLBase, err)
		}
	}
	if o.AdoptIssuer == "" && len(o.ImportPEM) == 0 {
		if o.IssuerName == "" || o.IssuerName == "default" {
			return fmt.Errorf("invalid --issuer-name %q: want a name such as meshtrust-root", o.IssuerName)
		}
		switch o.KeyType {
		case "ec", "rsa", "ed25519":
		default:
			return fmt.Errorf("invalid --key-type %q: want ec, rsa or ed25519", o.KeyType)
		}
	}
	return nil
}

func (o BootstrapOptions) crlExpiry() time.Duration {
	if o.CRLExpiry == 0 {
		return DefaultCRLExpiry
	}
	return o.CRLExpiry
}

func (o BootstrapOptions) crlRebuildGrace() time.Duration {
	if o.CRLRebuildGrace == 0 {
		return DefaultCRLRebuildGrace
	}
	return o.CRLRebuildGrace
}

func (o BootstrapOptions) keyBits() int {
	switch {
	case o.KeyBits != 0:
		return o.KeyBits
	case o.KeyType == "ec":
		return 256
	case o.KeyType == "rsa":
		return 2048
	}
	return 0
}

// RootInfo describes the root certificate bootstrap ended with.
type RootInfo struct {
	// IssuerID is Vault's issuer UUID.
	IssuerID string `json:"issuerID"`
	// IssuerName is the issuer's name in the mount.
	IssuerName string `json:"issuerName"`
	// Subject is the root's subject.
	Subject string `json:"subject"`
	// FingerprintSHA256 is the lowercase hex SHA-256 of the DER certificate.
	FingerprintSHA256 string `json:"fingerprintSHA256"`
	// NotAfter is the root's expiry.
	NotAfter time.Time `json:"notAfter"`
	// KeyAlgorithm is e.g. "ECDSA P-256".
	KeyAlgorithm string `json:"keyAlgorithm"`
	// PEM is the root certificate (public, safe to print).
	PEM string `json:"pem"`
	// Cert is the parsed certificate.
	Cert *x509.Certificate `json:"-"`
	// keyID is Vault's id of the issuer's key, for retire-root.
	keyID string
	// manualChain is the issuer's manual_chain: for a trust anchor, the
	// anchors bootstrap recorded (vaultcontract.AnchorChain).
	manualChain []string
}

// BootstrapPlan is what Bootstrap will do.
type BootstrapPlan struct {
	Plan
	// Root is the root the mount will sign with, when it exists already;
	// nil when the apply generates or imports it.
	Root *RootInfo `json:"root,omitempty"`

	c        *Client
	mount    string
	issuerID *string
}

// BootstrapResult is what Bootstrap did.
type BootstrapResult struct {
	Result
	// Root is the root the mount now signs with.
	Root RootInfo `json:"root"`
}

// Bootstrap plans and applies in one go.
func Bootstrap(ctx context.Context, c *Client, o BootstrapOptions) (*BootstrapResult, error) {
	return planThenApply(PlanBootstrap(ctx, c, o))(ctx)
}

// PlanBootstrap reads the PKI mount and plans to make it hold the shared
// root, idempotently: enable the mount, generate the root inside Vault (or
// adopt or import one), make it the default issuer, lower the max lease TTL
// to cap every intermediate, set per-issuer AIA and CRL URLs (see
// planURLs), make Vault rebuild its CRLs before they expire (planCRLConfig)
// and enable the CRL exchange (planCRLExchangeMount). It records the root
// among the mount's trust anchors (see planTrustAnchors). It changes
// nothing.
func PlanBootstrap(ctx context.Context, c *Client, o BootstrapOptions) (*BootstrapPlan, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	p := &BootstrapPlan{Plan: Plan{Operation: "bootstrap"}, c: c, mount: o.Mount, issuerID: new(string)}
	mounts, err := c.API.Sys().ListMountsWithContext(ctx)
	if err != nil {
		return nil, wrap(c.Addr, "listing secret engines", err)
	}
	mountName := "mount " + o.Mount + "/"
	m, exists := mounts[o.Mount+"/"]
	switch {
	case exists && m.Type != "pki":
		return nil, fmt.Errorf("vault at %s: %s/ is a %q engine, not pki", c.Addr, o.Mount, m.Type)
	case exists:
		p.check(mountName, SystemVault, "PKI engine already enabled")
	default:
		p.change(Step{Name: mountName, System: SystemVault, Detail: fmt.Sprintf("PKI engine enabled (max lease TTL %s)", Dur(o.MaxIntermediateTTL)),
			Before: Absent, After: "pki engine, max lease TTL " + Dur(o.MaxIntermediateTTL)},
			func(ctx context.Context, _ *Step) error {
				// Created with the intermediates' cap, so that a bootstrap that
				// fails later leaves no mount that would sign long-lived
				// intermediates.
				err := c.API.Sys().MountWithContext(ctx, o.Mount, &vaultapi.MountInput{Type: "pki", Description: "meshtrust shared root",
					Config: mountConfig(o.MaxIntermediateTTL)})
				return wrap(c.Addr, "enabling the PKI engine at "+o.Mount+"/", err)
			})
	}
	if err := p.planRoot(ctx, o, exists); err != nil {
		return nil, err
	}
	if err := p.planTrustAnchors(ctx, o, exists); err != nil {
		return nil, err
	}
	if err := p.planDefault(ctx, o, exists); err != nil {
		return nil, err
	}
	if err := p.planMaxTTL(ctx, o, exists); err != nil {
		return nil, err
	}
	if err := p.planURLs(ctx, o, exists); err != nil {
		return nil, err
	}
	if err := p.planCRLConfig(ctx, o, exists); err != nil {
		return nil, err
	}
	if err := p.planCRLExchangeMount(ctx); err != nil {
		return nil, err
	}
	return p, nil
}

// Apply carries the plan out, then reads the root the mount ends with.
func (p *BootstrapPlan) Apply(ctx context.Context) (*BootstrapResult, error) {
	steps, err := p.apply(ctx)
	if err != nil {
		return nil, err
	}
	root, err := readIssuer(ctx, p.c, p.mount, *p.issuerID)
	if err != nil {
		return nil, err
	}
	return &BootstrapResult{Result: resultOf(steps), Root: *root}, nil
}

// rootID is the root's issuer ID for a step's text: known once the root
// exists or the apply made it.
func (p *BootstrapPlan) rootID() string {
	if *p.issuerID == "" {
		return KnownAfterApply
	}
	return *p.issuerID
}

// planRoot finds the root, or plans to create it.
func (p *BootstrapPlan) planRoot(ctx context.Context, o BootstrapOptions, mounted bool) error {
	const name = "root issuer"
	c := p.c
	if o.AdoptIssuer != "" {
		info, err := readIssuer(ctx, c, o.Mount, o.AdoptIssuer)
		if err != nil {
			return err
		}
		if !pki.IsSelfSigned(info.Cert) || !info.Cert.IsCA {
			return fmt.Errorf("vault at %s: issuer %q in %s/ is not a self-signed CA, so it cannot be adopted as the root", c.Addr, o.AdoptIssuer, o.Mount)
		}
		p.found(info)
		p.check(name, SystemVault, "adopted existing issuer %s (%s)", info.IssuerName, info.IssuerID)
		return nil
	}
	if mounted {
		existing, err := readIssuer(ctx, c, o.Mount, o.IssuerName)
		if err == nil {
			p.found(existing)
			p.check(name, SystemVault, "root %s (%s) already exists; not regenerated", existing.IssuerName, existing.IssuerID)
			return nil
		} else if !isNotFound(err) {
			return err
		}
	}
	if len(o.ImportPEM) > 0 {
		p.change(Step{Name: name, System: SystemVault, Detail: fmt.Sprintf("imported root as %s (%s)", o.IssuerName, KnownAfterApply),
			Before: Absent, After: fmt.Sprintf("issuer %s (%s), imported from --import-pem", o.IssuerName, KnownAfterApply)},
			func(ctx context.Context, s *Step) error {
				verb, id, err := importRoot(ctx, c, o)
				if err != nil {
					return err
				}
				*p.issuerID = id
				s.Detail = fmt.Sprintf("%s %s (%s)", verb, o.IssuerName, id)
				s.After = fmt.Sprintf("issuer %s (%s), imported from --import-pem", o.IssuerName, id)
				return nil
			})
		return nil
	}
	after := func(id string) string {
		return fmt.Sprintf("issuer %s (%s), CN %q, key type %s %d, generated inside Vault", o.IssuerName, id, o.CommonName, o.KeyType, o.keyBits())
	}
	detail := func(id string) string {
		return fmt.Sprintf("generated root %s (%s) inside Vault, key type %s %d", o.IssuerName, id, o.KeyType, o.keyBits())
	}
	p.change(Step{Name: name, System: SystemVault, Detail: detail(KnownAfterApply), Before: Absent, After: after(KnownAfterApply)},
		func(ctx context.Context, s *Step) error {
			id, err := generateRoot(ctx, c, o)
			if err != nil {
				return err
			}
			*p.issuerID = id
			s.Detail, s.After = detail(id), after(id)
			return nil
		})
	return nil
}

// found records a root that exists already.
func (p *BootstrapPlan) found(info *RootInfo) {
	p.Root = info
	*p.issuerID = info.IssuerID
}

// generateRoot generates the root inside Vault. Vault cuts the root itself
// to the mount's max lease TTL, so that is raised to the root's TTL for this
// one call; while it is raised, any intermediate signed in the mount could
// get the root's lifetime, so it is restored whether or not the call works.
func generateRoot(ctx context.Context, c *Client, o BootstrapOptions) (id string, err error) {
	restore, err := raiseMaxTTL(ctx, c, o.Mount, o.TTL)
	if err != nil {
		return "", err
	}
	defer func() {
		rerr := restore()
		if rerr == nil {
			return
		}
		rerr = fmt.Errorf("max lease TTL of %s/ may still be %s, longer than any intermediate should live; rerun bootstrap to lower it: %w", o.Mount, Dur(o.TTL), rerr)
		if err != nil {
			rerr = fmt.Errorf("%w; and %w", err, rerr)
		}
		id, err = "", rerr
	}()
	s, err := c.write(ctx, "generating the root in "+o.Mount+"/", o.Mount+"/root/generate/internal", map[string]any{
		"common_name": o.CommonName,
		"key_type":    o.KeyType,
		"key_bits":    o.keyBits(),
		"ttl":         o.TTL.String(),
		"issuer_name": o.IssuerName,
		"key_name":    o.IssuerName,
	})
	if err != nil {
		return "", err
	}
	if s != nil {
		id, _ = s.Data["issuer_id"].(string)
	}
	if id == "" {
		return "", fmt.Errorf("vault at %s: generating the root: response carries no issuer_id", c.Addr)
	}
	return id, nil
}

// importRoot imports the root and names it. When the certificate is
// already in the mount, Vault imports nothing and returns the existing
// issuer; that one is named only if it has no name yet (a former import
// stopped before naming it): renaming it would break every policy pinned to
// <mount>/issuer/<old name>/sign-intermediate.
func importRoot(ctx context.Context, c *Client, o BootstrapOptions) (verb, id string, err error) {
	s, err := c.write(ctx, "importing the root into "+o.Mount+"/", o.Mount+"/issuers/import/bundle", map[string]any{"pem_bundle": string(o.ImportPEM)})
	if err != nil {
		return "", "", err
	}
	var data map[string]any
	if s != nil {
		data = s.Data
	}
	id, isNew, err := importedIssuer(data)
	if err != nil {
		return "", "", fmt.Errorf("vault at %s: importing the root into %s/: %w", c.Addr, o.Mount, err)
	}
	verb = "imported root as"
	if !isNew {
		existing, err := readIssuer(ctx, c, o.Mount, id)
		if err != nil {
			return "", "", err
		}
		if existing.IssuerName != "" {
			return "", "", fmt.Errorf("vault at %s: the root in --import-pem is already issuer %q (%s) of %s/: refusing to rename it to %q, which would break every policy pinned to its name; pass --adopt-issuer %s to use it",
				c.Addr, existing.IssuerName, id, o.Mount, o.IssuerName, existing.IssuerName)
		}
		verb = "named the unnamed, already imported root"
	}
	// PATCH, not POST: a POST to the issuer resets every setting it omits.
	if _, err := c.patch(ctx, "naming the imported root", o.Mount+"/issuer/"+id, map[string]any{"issuer_name": o.IssuerName}); err != nil {
		return "", "", err
	}
	return verb, id, nil
}

// importedIssuer picks the one issuer of an import/bundle response, and
// whether Vault created it (false: the certificate was already there).
func importedIssuer(data map[string]any) (id string, isNew bool, err error) {
	imported := stringList(data["imported_issuers"])
	existing := stringList(data["existing_issuers"])
	if len(imported) == 0 && len(existing) == 0 {
		// Vault before 1.13 does not list existing issuers; its mapping
		// holds every issuer of the bundle.
		mapping, _ := data["mapping"].(map[string]any)
		for k := range mapping {
			existing = append(existing, k)
		}
	}
	switch {
	case len(imported)+len(existing) != 1:
		return "", false, fmt.Errorf("want exactly one issuer in the PEM bundle, Vault found %d", len(imported)+len(existing))
	case len(imported) == 1:
		return imported[0], true, nil
	}
	return existing[0], false, nil
}

func (p *BootstrapPlan) planDefault(ctx context.Context, o BootstrapOptions, mounted bool) error {
	c := p.c
	current := ""
	if mounted {
		s, err := c.read(ctx, "reading the default issuer of "+o.Mount+"/", o.Mount+"/config/issuers")
		if err != nil {
			return err
		}
		if s != nil {
			current, _ = s.Data["default"].(string)
		}
	}
	const name = "default issuer"
	switch {
	case *p.issuerID != "" && current == *p.issuerID:
		p.check(name, SystemVault, "root is the default issuer")
	case !o.SetDefault:
		p.check(name, SystemVault, "left at %s (--set-default=false)", current)
	default:
		p.change(Step{Name: name, System: SystemVault, Detail: fmt.Sprintf("root made the default issuer (was %q)", current),
			Before: orUnset(current), After: p.rootID()},
			func(ctx context.Context, s *Step) error {
				s.After = *p.issuerID
				_, err := c.write(ctx, "making the root the default issuer", o.Mount+"/config/issuers", map[string]any{"default": *p.issuerID})
				return err
			})
	}
	return nil
}

func (p *BootstrapPlan) planMaxTTL(ctx context.Context, o BootstrapOptions, mounted bool) error {
	c := p.c
	// A new mount is created with the cap, and generating the root puts it back.
	current := o.MaxIntermediateTTL
	if mounted {
		cfg, err := c.API.Sys().MountConfigWithContext(ctx, o.Mount)
		if err != nil {
			return wrap(c.Addr, "reading the tuning of "+o.Mount+"/", err)
		}
		current = time.Duration(cfg.MaxLeaseTTL) * time.Second
	}
	const name = "max lease TTL"
	if current == o.MaxIntermediateTTL {
		p.check(name, SystemVault, "already %s: no intermediate can live longer", Dur(o.MaxIntermediateTTL))
		return nil
	}
	p.change(Step{Name: name, System: SystemVault, Detail: fmt.Sprintf("set to %s (was %s): no intermediate can live longer", Dur(o.MaxIntermediateTTL), Dur(current)),
		Before: Dur(current), After: Dur(o.MaxIntermediateTTL)},
		func(ctx context.Context, _ *Step) error { return tuneMaxTTL(ctx, c, o.Mount, o.MaxIntermediateTTL) })
	return nil
}

// raiseMaxTTL raises the mount's max lease TTL to at least ttl and returns
// the function that puts back the value it had. The restore runs even when
// ctx is done: a cancelled bootstrap must not leave the mount raised.
func raiseMaxTTL(ctx context.Context, c *Client, mount string, ttl time.Duration) (restore func() error, err error) {
	noop := func() error { return nil }
	cfg, err := c.API.Sys().MountConfigWithContext(ctx, mount)
	if err != nil {
		return noop, wrap(c.Addr, "reading the tuning of "+mount+"/", err)
	}
	before := time.Duration(cfg.MaxLeaseTTL) * time.Second
	if before >= ttl {
		return noop, nil
	}
	if err := tuneMaxTTL(ctx, c, mount, ttl); err != nil {
		return noop, err
	}
	return func() error { return tuneMaxTTL(context.WithoutCancel(ctx), c, mount, before) }, nil
}

// tuneMaxTTL sets the mount's max lease TTL.
func tuneMaxTTL(ctx context.Context, c *Client, mount string, ttl time.Duration) error {
	in := mountConfig(ttl)
	return wrap(c.Addr, "tuning the max lease TTL of "+mount+"/", c.API.Sys().TuneMountWithContext(ctx, mount, in))
}

// readIssuer reads an issuer's certificate; a missing issuer gives an error
// for which isNotFound is true.
func readIssuer(ctx context.Context, c *Client, mount, ref string) (*RootInfo, error) {
	s, err := c.read(ctx, "reading issuer "+ref+" of "+mount+"/", mount+"/issuer/"+ref)
	if err != nil {
		if IsStatus(err, 400) || IsStatus(err, 404) || IsStatus(err, 500) && strings.Contains(err.Error(), "unable to find") {
			return nil, &notFound{err}
		}
		return nil, err
	}
	if s == nil || s.Data == nil {
		return nil, &notFound{fmt.Errorf("vault at %s: issuer %s of %s/ not found", c.Addr, ref, mount)}
	}
	certPEM, _ := s.Data["certificate"].(string)
	certs, err := pki.DecodeCertificates([]byte(certPEM), pki.MaxChainPEMSize)
	if err != nil {
		return nil, fmt.Errorf("vault at %s: issuer %s of %s/ has an unreadable certificate: %w", c.Addr, ref, mount, err)
	}
	cert := certs[0]
	info := &RootInfo{Cert: cert, PEM: string(pki.EncodeCertificates(cert)), Subject: cert.Subject.String(),
		FingerprintSHA256: pki.Fingerprint(cert), NotAfter: cert.NotAfter.UTC(), KeyAlgorithm: keyAlgorithm(cert)}
	info.IssuerID, _ = s.Data["issuer_id"].(string)
	info.IssuerName, _ = s.Data["issuer_name"].(string)
	info.keyID, _ = s.Data["key_id"].(string)
	info.manualChain = stringList(s.Data["manual_chain"])
	return info, nil
}

type notFound struct{ err error }

func (n *notFound) Error() string { return n.err.Error() }
func (n *notFound) Unwrap() error { return n.err }

func isNotFound(err error) bool {
	var nf *notFound
	return errors.As(err, &nf)
}

func keyAlgorithm(c *x509.Certificate) string {
	switch k := c.PublicKey.(type) {
	case *ecdsa.PublicKey:
		return "ECDSA " + k.Curve.Params().Name
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA %d", k.N.BitLen())
	case ed25519.PublicKey:
		return "Ed25519"
	}
	return c.PublicKeyAlgorithm.String()
}

func mountConfig(maxTTL time.Duration) vaultapi.MountConfigInput {
	return vaultapi.MountConfigInput{MaxLeaseTTL: maxTTL.String()}
}

func stringList(v any) []string {
	switch t := v.(type) {
	case []any:
		out := make([]string, 0, len(t))
		for _, e := range t {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		return out
	case []string:
		return t
	case string:
		if t == "" {
			return nil
		}
		return []string{t}
	}
	return nil
}

// Dur prints a duration the way people write them in flags: "2160h", not
// "2160h0m0s".
func Dur(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// MountMaxTTL returns the PKI mount's max lease TTL: the longest life any
// intermediate signed there can get.
func MountMaxTTL(ctx context.Context, c *Client, mount string) (time.Duration, error) {
	mounts, err := c.API.Sys().ListMountsWithContext(ctx)
	if err != nil {
		return 0, wrap(c.Addr, "listing secret engines", err)
	}
	if m, ok := mounts[mount+"/"]; !ok || m.Type != "pki" {
		return 0, fmt.Errorf("vault at %s: no PKI engine at %s/: run `meshtrust vault bootstrap` first or pass --mount", c.Addr, mount)
	}
	cfg, err := c.API.Sys().MountConfigWithContext(ctx, mount)
	if err != nil {
		return 0, wrap(c.Addr, "reading the tuning of "+mount+"/", err)
	}
	return time.Duration(cfg.MaxLeaseTTL) * time.Second, nil
}
