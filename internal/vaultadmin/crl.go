package vaultadmin

import (
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"strings"
	"time"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/meshtrust/meshtrust/internal/pki"
	"github.com/meshtrust/meshtrust/internal/vaultcontract"
)

// Vault's side of revocation reaching the data plane: the mount's CRL
// settings, the CRL exchange mount and entries, reading CRLs, rotating them.

// CRL defaults bootstrap gives the mount.
const (
	// DefaultCRLExpiry is Vault's own default CRL lifetime.
	DefaultCRLExpiry = 72 * time.Hour
	// DefaultCRLRebuildGrace is how long before expiry Vault rebuilds the
	// CRL; Vault's default. Clusters refresh every minute, so a CRL they
	// carry has at least this much left.
	DefaultCRLRebuildGrace = 12 * time.Hour
)

// crlConfig is the part of <mount>/config/crl bootstrap manages.
type crlConfig struct {
	Disabled    bool
	AutoRebuild bool
	Expiry      time.Duration
	Grace       time.Duration
}

func (c crlConfig) String() string {
	switch {
	case c.Disabled:
		return "CRL disabled"
	case !c.AutoRebuild:
		return fmt.Sprintf("expiry %s, auto_rebuild off (Vault then keeps serving a CRL past its nextUpdate)", Dur(c.Expiry))
	}
	return fmt.Sprintf("expiry %s, auto_rebuild on, rebuilt %s before expiry", Dur(c.Expiry), Dur(c.Grace))
}

func readCRLConfig(ctx context.Context, c *Client, mount string) (crlConfig, error) {
	s, err := c.read(ctx, "reading "+mount+"/config/crl", mount+"/config/crl")
	if err != nil {
		return crlConfig{}, err
	}
	var cfg crlConfig
	if s == nil || s.Data == nil {
		return crlConfig{Expiry: DefaultCRLExpiry, Grace: DefaultCRLRebuildGrace}, nil
	}
	cfg.Disabled, _ = s.Data["disable"].(bool)
	cfg.AutoRebuild, _ = s.Data["auto_rebuild"].(bool)
	if cfg.Expiry, err = vaultDuration(s.Data["expiry"]); err != nil {
		return crlConfig{}, fmt.Errorf("vault at %s: %s/config/crl expiry: %w", c.Addr, mount, err)
	}
	if cfg.Grace, err = vaultDuration(s.Data["auto_rebuild_grace_period"]); err != nil {
		return crlConfig{}, fmt.Errorf("vault at %s: %s/config/crl auto_rebuild_grace_period: %w", c.Addr, mount, err)
	}
	return cfg, nil
}

// MountCRLTimes returns the CRL expiry and rebuild grace the PKI mount
// has, for a command that adds a root through PlanBootstrap (rotate-root)
// and must keep what bootstrap set rather than reset it to the defaults.
func MountCRLTimes(ctx context.Context, c *Client, mount string) (expiry, grace time.Duration, err error) {
	cfg, err := readCRLConfig(ctx, c, mount)
	if err != nil {
		return 0, 0, err
	}
	return cfg.Expiry, cfg.Grace, nil
}

// vaultDuration reads a duration Vault returns as a Go duration string.
func vaultDuration(v any) (time.Duration, error) {
	s, _ := v.(string)
	if s == "" {
		return 0, nil
	}
	return time.ParseDuration(s)
}

// planCRLConfig makes the mount's CRL one that clusters can carry: enabled,
// rebuilt automatically before it expires (auto_rebuild; without it Vault
// serves its last CRL past nextUpdate, and Envoy refuses every chain of that
// root once it expires), with bootstrap's expiry and grace. auto_rebuild also
// means a revocation no longer rebuilds the CRL by itself, so `meshtrust
// vault revoke` rotates it.
func (p *BootstrapPlan) planCRLConfig(ctx context.Context, o BootstrapOptions, mounted bool) error {
	want := crlConfig{AutoRebuild: true, Expiry: o.crlExpiry(), Grace: o.crlRebuildGrace()}
	have := crlConfig{Expiry: DefaultCRLExpiry, Grace: DefaultCRLRebuildGrace}
	if mounted {
		var err error
		if have, err = readCRLConfig(ctx, p.c, o.Mount); err != nil {
			return err
		}
	}
	const name = "CRL"
	if have == want {
		p.check(name, SystemVault, "already %s", want)
		return nil
	}
	p.change(Step{Name: name, System: SystemVault, Detail: "config/crl set: " + want.String(), Before: have.String(), After: want.String()},
		func(ctx context.Context, _ *Step) error {
			_, err := p.c.write(ctx, "writing "+o.Mount+"/config/crl", o.Mount+"/config/crl", map[string]any{
				"disable":                   false,
				"auto_rebuild":              true,
				"expiry":                    want.Expiry.String(),
				"auto_rebuild_grace_period": want.Grace.String(),
			})
			return err
		})
	return nil
}

// planCRLExchangeMount enables the KV (version 1) mount where clusters
// publish their intermediates' CRLs for each other (vaultcontract).
func (p *BootstrapPlan) planCRLExchangeMount(ctx context.Context) error {
	c := p.c
	mount := vaultcontract.CRLExchangeMount
	mounts, err := c.API.Sys().ListMountsWithContext(ctx)
	if err != nil {
		return wrap(c.Addr, "listing secret engines", err)
	}
	name := "mount " + mount + "/"
	if m, ok := mounts[mount+"/"]; ok {
		if why := exchangeMountProblem(m); why != "" {
			return fmt.Errorf("vault at %s: %s/ %s; the CRL exchange needs a KV version 1 engine there", c.Addr, mount, why)
		}
		p.check(name, SystemVault, "CRL exchange (KV version 1) already enabled")
		return nil
	}
	p.change(Step{Name: name, System: SystemVault, Detail: "CRL exchange enabled (KV version 1): each cluster publishes its intermediates' CRLs there for the others",
		Before: Absent, After: "kv engine, version 1"},
		func(ctx context.Context, _ *Step) error {
			err := c.API.Sys().MountWithContext(ctx, mount, &vaultapi.MountInput{Type: "kv", Description: "meshtrust CRL exchange", Options: map[string]string{"version": "1"}})
			return wrap(c.Addr, "enabling the CRL exchange at "+mount+"/", err)
		})
	return nil
}

// exchangeMounted reports whether the CRL exchange mount exists (Vault
// answers a read below a missing mount like one of a missing key).
func exchangeMounted(ctx context.Context, c *Client) (bool, error) {
	mounts, err := c.API.Sys().ListMountsWithContext(ctx)
	if err != nil {
		return false, wrap(c.Addr, "listing secret engines", err)
	}
	_, ok := mounts[vaultcontract.CRLExchangeMount+"/"]
	return ok, nil
}

func exchangeMountProblem(m *vaultapi.MountOutput) string {
	switch {
	case m.Type != "kv":
		return fmt.Sprintf("is a %q engine", m.Type)
	case m.Options["version"] == "2":
		return "is a KV version 2 engine"
	}
	return ""
}

// planCRLEntry creates the cluster's entry in the CRL exchange, empty,
// unless it exists: the other clusters then know the cluster is enrolled
// even before its controllers publish a CRL, and hold off carrying CRLs
// until every enrolled cluster has (a cluster carrying CRLs refuses the
// workloads of any cluster whose intermediate CRL it lacks).
func planCRLEntry(ctx context.Context, p *Plan, c *Client, cluster, trustDomain string) error {
	mounted, err := exchangeMounted(ctx, c)
	if err != nil {
		return err
	}
	if !mounted {
		return fmt.Errorf("vault at %s: no CRL exchange mount %s/: run `meshtrust vault bootstrap` first (it enables it)", c.Addr, vaultcontract.CRLExchangeMount)
	}
	path := vaultcontract.CRLExchangePath(trustDomain)
	s, err := c.read(ctx, "reading "+path, path)
	switch {
	case err != nil:
		return err
	case s != nil:
		owner, _ := s.Data[vaultcontract.CRLEntryCluster].(string)
		if owner != "" && owner != cluster {
			return fmt.Errorf("vault at %s: %s belongs to cluster %q, which has trust domain %s too; trust domains must differ between clusters", c.Addr, path, owner, trustDomain)
		}
		p.check(path, SystemVault, "CRL exchange entry exists")
		return nil
	}
	p.change(Step{Name: path, System: SystemVault, Detail: "CRL exchange entry created, empty until the cluster's controllers publish",
		Before: Absent, After: "entry of cluster " + cluster},
		func(ctx context.Context, _ *Step) error {
			_, err := c.write(ctx, "creating "+path, path, map[string]any{vaultcontract.CRLEntryCluster: cluster, vaultcontract.CRLEntryPEM: ""})
			return err
		})
	return nil
}

// planCRLEntryRemoval deletes the cluster's exchange entry, so that the
// other clusters stop waiting for (or carrying) its CRLs. It returns the
// entry's path for unenroll's last check, "" when there is no exchange.
func planCRLEntryRemoval(ctx context.Context, p *Plan, c *Client, trustDomain string) (string, error) {
	path := vaultcontract.CRLExchangePath(trustDomain)
	mounted, err := exchangeMounted(ctx, c)
	if err != nil || !mounted {
		p.check(path, SystemVault, "no CRL exchange mount")
		return "", err
	}
	s, err := c.read(ctx, "reading "+path, path)
	switch {
	case err != nil:
		return "", err
	case s == nil:
		p.check(path, SystemVault, "no CRL exchange entry")
		return path, nil
	}
	p.change(Step{Name: path, System: SystemVault, Detail: "CRL exchange entry deleted", Before: "entry of trust domain " + trustDomain, After: Absent},
		func(ctx context.Context, _ *Step) error { return c.delete(ctx, "deleting "+path, path) })
	return path, nil
}

// IssuerCRL is one issuer of a PKI mount with the CRL Vault serves for it.
type IssuerCRL struct {
	// ID and Name are the issuer's.
	ID, Name string
	// Cert is the issuer's certificate.
	Cert *x509.Certificate
	// CRL is Vault's current CRL of it.
	CRL *x509.RevocationList
}

// FetchCRLs reads Vault's CRL of each CA whose CRL a cluster signing under
// the issuer ref of mount ("" for the default issuer) carries
// (vaultcontract.CRLIssuers, the rule the issuer applies), through Vault's
// unauthenticated endpoints (issuer/<ref>/json, LIST issuers, .../crl/pem),
// so it needs no token. Every root bootstrap recorded is in each one's
// ca_chain, so the default issuer gives the set of every cluster. A mount
// without that issuer gives none.
func FetchCRLs(ctx context.Context, c *Client, mount, ref string, now time.Time) ([]IssuerCRL, error) {
	signer, err := readPublicIssuer(ctx, c, mount, ref)
	if err != nil || signer == nil {
		return nil, err
	}
	ids, err := c.list(ctx, "listing issuers of "+mount+"/", mount+"/issuers")
	if err != nil {
		return nil, err
	}
	found, err := vaultcontract.FindIssuers(ctx, ids, vaultcontract.CRLIssuers(signer.Cert, signer.chain, now),
		func(ctx context.Context, id string) (IssuerCRL, *x509.Certificate, error) {
			is, err := readPublicIssuer(ctx, c, mount, id)
			if err != nil || is == nil {
				return IssuerCRL{}, nil, err
			}
			return IssuerCRL{ID: id, Name: is.Name, Cert: is.Cert}, is.Cert, nil
		})
	if err != nil {
		return nil, err
	}
	for i, ic := range found {
		crl, err := readCRL(ctx, c, mount, ic.ID)
		if err != nil {
			return nil, err
		}
		if !pki.CRLIssuedBy(crl, ic.Cert) {
			return nil, fmt.Errorf("vault at %s: the CRL of issuer %s of %s/ is not signed by that issuer", c.Addr, ic.ID, mount)
		}
		found[i].CRL = crl
	}
	return found, nil
}

// publicIssuer is what issuer/<ref>/json shows without a token.
type publicIssuer struct {
	Name  string
	Cert  *x509.Certificate
	chain []*x509.Certificate
}

// readPublicIssuer reads issuer/<ref>/json (vaultcontract.IssuerJSONPath),
// which unlike issuer/<ref> needs no token; nil when there is no such
// issuer.
func readPublicIssuer(ctx context.Context, c *Client, mount, ref string) (*publicIssuer, error) {
	path := vaultcontract.IssuerJSONPath(mount, ref)
	s, err := c.read(ctx, "reading "+path, path)
	if err != nil || s == nil || s.Data == nil {
		return nil, err
	}
	certPEM, _ := s.Data["certificate"].(string)
	certs, err := pki.DecodeCertificates([]byte(certPEM), pki.MaxChainPEMSize)
	if err != nil {
		return nil, fmt.Errorf("vault at %s: %s has an unreadable certificate: %w", c.Addr, path, err)
	}
	is := &publicIssuer{Cert: certs[0]}
	is.Name, _ = s.Data["issuer_name"].(string)
	chain, _ := s.Data["ca_chain"].([]any)
	for _, v := range chain {
		text, _ := v.(string)
		cs, err := pki.DecodeCertificates([]byte(text), pki.MaxChainPEMSize)
		if err != nil {
			return nil, fmt.Errorf("vault at %s: %s field ca_chain: %w", c.Addr, path, err)
		}
		is.chain = append(is.chain, cs...)
	}
	return is, nil
}

func readCRL(ctx context.Context, c *Client, mount, id string) (*x509.RevocationList, error) {
	path := mount + "/issuer/" + id + "/crl/pem"
	op := "reading " + path
	resp, err := c.API.Logical().ReadRawWithContext(ctx, path)
	if err != nil {
		return nil, wrap(c.Addr, op, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, pki.MaxCRLPEMSize+1))
	if err != nil {
		return nil, wrap(c.Addr, op, err)
	}
	crls, err := pki.DecodeCRLs(body, pki.MaxCRLPEMSize)
	if err != nil {
		return nil, fmt.Errorf("vault at %s: %s: %w", c.Addr, op, err)
	}
	if len(crls) != 1 {
		return nil, fmt.Errorf("vault at %s: %s: %d CRLs, want one", c.Addr, op, len(crls))
	}
	return crls[0], nil
}

// CRLs returns the CRLs of ics.
func CRLs(ics []IssuerCRL) []*x509.RevocationList {
	out := make([]*x509.RevocationList, len(ics))
	for i, ic := range ics {
		out[i] = ic.CRL
	}
	return out
}

// planCRLRotation rebuilds the mount's CRLs when they miss a revoked
// serial of want: with auto_rebuild on, Vault rebuilds only on its own
// schedule, so a revocation reaches the CRL through this rotation. A run
// whose revocations are already on the CRLs rotates nothing.
func planCRLRotation(ctx context.Context, p *Plan, c *Client, mount string, want []string, now time.Time) error {
	if len(want) == 0 {
		return nil
	}
	ics, err := FetchCRLs(ctx, c, mount, "", now)
	if err != nil {
		return err
	}
	listed := map[string]bool{}
	for _, s := range pki.RevokedSerials(CRLs(ics)) {
		listed[s] = true
	}
	var missing []string
	for _, s := range want {
		if !listed[serialHex(s)] {
			missing = append(missing, s)
		}
	}
	name := "CRL of " + mount + "/"
	if len(missing) == 0 {
		p.check(name, SystemVault, "already lists every revoked intermediate (%d)", len(want))
		return nil
	}
	p.change(Step{Name: name, System: SystemVault, Detail: fmt.Sprintf("rebuilt (crl/rotate): %d revoked intermediate(s) now on it", len(missing)),
		Before: "lacks " + strings.Join(missing, " "), After: "lists " + strings.Join(missing, " ")},
		func(ctx context.Context, _ *Step) error {
			_, err := c.read(ctx, "rotating the CRLs of "+mount+"/", mount+"/crl/rotate")
			return err
		})
	return nil
}

// serialHex turns Vault's colon-separated serial into pki.RevokedSerials'
// form: lowercase hex without leading zeros.
func serialHex(vaultSerial string) string {
	s := strings.TrimLeft(strings.ToLower(strings.NewReplacer(":", "", "-", "").Replace(vaultSerial)), "0")
	if s == "" {
		return "0"
	}
	return s
}
