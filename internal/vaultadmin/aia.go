package vaultadmin

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strings"
)

// The URL templates bootstrap writes to <mount>/config/urls (Vault >= 1.13).
// Vault fills {{issuer_id}} with the issuer that signs, so a certificate
// names its own root's CRL and certificate, not the mount's default issuer:
// after a root rotation, an intermediate signed under the old root and then
// revoked is on the CRL its certificate points to. {{cluster_aia_path}} is
// <mount>/config/cluster's aia_path, the one place the Vault address lives.
const (
	issuingTemplate = "{{cluster_aia_path}}/issuer/{{issuer_id}}/der"
	crlTemplate     = "{{cluster_aia_path}}/issuer/{{issuer_id}}/crl/der"

	aiaPathVar = "{{cluster_aia_path}}"
	pathVar    = "{{cluster_path}}"
	issuerVar  = "{{issuer_id}}"
)

// aiaConfig is a PKI mount's AIA settings: config/cluster and config/urls.
type aiaConfig struct {
	// Path and AIAPath are config/cluster's path and aia_path.
	Path, AIAPath string
	// Issuing and CRL are config/urls' issuing_certificates and
	// crl_distribution_points, the two lists bootstrap manages.
	Issuing, CRL []string
	// Others holds config/urls' other URL lists (OCSP, delta CRL), which
	// bootstrap leaves alone but whose templates need config/cluster too.
	Others []string
	// Templating is config/urls' enable_templating.
	Templating bool
}

// configured says whether the mount already advertises an issuing
// certificate or CRL address, chosen by someone (or an earlier run).
func (a aiaConfig) configured() bool { return len(a.Issuing)+len(a.CRL) > 0 }

// perIssuer says whether config/urls holds exactly bootstrap's templates.
func (a aiaConfig) perIssuer() bool {
	return a.Templating && slices.Equal(a.Issuing, []string{issuingTemplate}) && slices.Equal(a.CRL, []string{crlTemplate})
}

// uses says whether Vault substitutes variable in some URL of the mount:
// then config/cluster must set it, or Vault refuses to sign.
func (a aiaConfig) uses(variable string) bool {
	if !a.Templating {
		return false
	}
	for _, u := range slices.Concat(a.Issuing, a.CRL, a.Others) {
		if strings.Contains(u, variable) {
			return true
		}
	}
	return false
}

// resolve is what Vault writes into a certificate issuer signs for u.
func (a aiaConfig) resolve(u, issuer string) string {
	if !a.Templating {
		return u
	}
	return strings.NewReplacer(aiaPathVar, a.AIAPath, pathVar, a.Path, issuerVar, issuer).Replace(u)
}

// aiaPlan is what ensureURLs writes, and the settings the mount ends with.
type aiaPlan struct {
	// Cluster says to write Final.Path and Final.AIAPath to config/cluster.
	Cluster bool
	// URLs says to write the per-issuer templates to config/urls.
	URLs bool
	// Final is the mount's settings after the writes.
	Final aiaConfig
	// NoBase is why nothing could be written although the mount needs it:
	// neither --url-base nor a usable default was given.
	NoBase string
}

// planAIA decides what to write. urlBase is --url-base (empty: not given);
// defaultBase stands in for it only where the mount has no setting yet.
// With --url-base, the mount is made to match it. Without, what the mount
// has is kept, so that a run through another spelling of the Vault address
// (localhost, a port-forward) changes nothing; only empty settings that the
// URLs need are filled.
func planAIA(cur aiaConfig, mount, urlBase, defaultBase string) aiaPlan {
	p := aiaPlan{Final: cur}
	base := urlBase
	switch {
	case base != "":
	case defaultBase == "":
		p.NoBase = "no --url-base and no Vault address to stand in"
	default:
		if err := checkURLBase(defaultBase); err != nil {
			p.NoBase = fmt.Sprintf("no --url-base, and the Vault address %q cannot stand in: %v", defaultBase, err)
		} else {
			base = defaultBase
		}
	}
	if !cur.configured() || urlBase != "" && !cur.perIssuer() {
		if base == "" {
			return aiaPlan{Final: cur, NoBase: p.NoBase}
		}
		p.URLs = true
		p.Final.Issuing, p.Final.CRL, p.Final.Templating = []string{issuingTemplate}, []string{crlTemplate}, true
	}
	want := mountURL(base, mount)
	switch {
	case urlBase != "":
		p.Cluster = cur.Path != want || cur.AIAPath != want
		p.Final.Path, p.Final.AIAPath = want, want
	case p.Final.uses(aiaPathVar) && cur.AIAPath == "" || p.Final.uses(pathVar) && cur.Path == "":
		if base == "" {
			return aiaPlan{Final: cur, NoBase: p.NoBase}
		}
		// Fill only what is empty; a set path is the mount's own canonical
		// address, the best stand-in for an empty aia_path and vice versa.
		p.Cluster = true
		p.Final.Path = firstNonEmpty(cur.Path, cur.AIAPath, want)
		p.Final.AIAPath = firstNonEmpty(cur.AIAPath, cur.Path, want)
	}
	p.NoBase = ""
	return p
}

// planURLs plans planAIA's writes: config/cluster first, so that the
// templates in config/urls never exist without the address they need. A
// mount the plan creates has no settings yet.
func (bp *BootstrapPlan) planURLs(ctx context.Context, o BootstrapOptions, mounted bool) error {
	c := bp.c
	var cur aiaConfig
	if mounted {
		var err error
		if cur, err = readAIA(ctx, c, o.Mount); err != nil {
			return err
		}
	}
	p := planAIA(cur, o.Mount, o.URLBase, o.DefaultURLBase)
	f := p.Final
	const base = "URL base"
	switch {
	case p.NoBase != "":
		bp.check(base, SystemVault, "not set: %s", p.NoBase)
	case p.Cluster:
		bp.change(Step{Name: base, System: SystemVault,
			Detail: fmt.Sprintf("config/cluster aia_path %s, path %s (was %s, %s)", f.AIAPath, f.Path, orUnset(cur.AIAPath), orUnset(cur.Path)),
			Before: fmt.Sprintf("aia_path %s, path %s", orUnset(cur.AIAPath), orUnset(cur.Path)),
			After:  fmt.Sprintf("aia_path %s, path %s", f.AIAPath, f.Path)},
			func(ctx context.Context, _ *Step) error {
				_, err := c.write(ctx, "setting the URL base (config/cluster) of "+o.Mount+"/", o.Mount+"/config/cluster",
					map[string]any{"path": f.Path, "aia_path": f.AIAPath})
				return err
			})
	case o.URLBase != "":
		bp.check(base, SystemVault, "config/cluster aia_path and path already %s", f.AIAPath)
	case f.uses(aiaPathVar) || f.uses(pathVar):
		bp.check(base, SystemVault, "kept config/cluster aia_path %s, path %s (--url-base not given)", orUnset(f.AIAPath), orUnset(f.Path))
	default:
		bp.check(base, SystemVault, "config/cluster not used by the mount's URLs; left as is")
	}

	advertised := func(issuerID string) string {
		return fmt.Sprintf("issuing certificate %s, CRL %s", strings.Join(resolveAll(f, f.Issuing, issuerID), " "), strings.Join(resolveAll(f, f.CRL, issuerID), " "))
	}
	// The text names the root's own URLs, known once the root is.
	resolved := func(format string) func(context.Context, *Step) error {
		return func(_ context.Context, s *Step) error {
			s.Detail = fmt.Sprintf(format, advertised(*bp.issuerID))
			return nil
		}
	}
	const urls = "URLs"
	switch {
	case p.NoBase != "" && !f.configured():
		bp.check(urls, SystemVault, "not set: certificates carry no issuing certificate or CRL address; pass --url-base")
	case p.URLs:
		format := "per issuer; this root's intermediates get %s"
		bp.change(Step{Name: urls, System: SystemVault, Detail: fmt.Sprintf(format, advertised(bp.rootID())),
			Before: fmt.Sprintf("issuing certificates %s, CRL %s", listOrUnset(cur.Issuing), listOrUnset(cur.CRL)),
			After:  fmt.Sprintf("issuing certificates %s, CRL %s, templated", listOrUnset(f.Issuing), listOrUnset(f.CRL))},
			func(ctx context.Context, s *Step) error {
				if _, err := c.write(ctx, "setting the per-issuer URLs (config/urls) of "+o.Mount+"/", o.Mount+"/config/urls", map[string]any{
					"enable_templating":       true,
					"issuing_certificates":    f.Issuing,
					"crl_distribution_points": f.CRL,
				}); err != nil {
					return err
				}
				return resolved(format)(ctx, s)
			})
	case f.perIssuer():
		format := "already per issuer; this root's intermediates get %s"
		bp.check(urls, SystemVault, format, advertised(bp.rootID())).run = resolved(format)
	default:
		format := "kept as configured (--url-base not given): %s; not bootstrap's per-issuer URLs: pass --url-base to replace them"
		bp.check(urls, SystemVault, format, advertised(bp.rootID())).run = resolved(format)
	}
	return nil
}

func listOrUnset(l []string) string {
	if len(l) == 0 {
		return "unset"
	}
	return strings.Join(l, " ")
}

func readAIA(ctx context.Context, c *Client, mount string) (aiaConfig, error) {
	var a aiaConfig
	s, err := c.read(ctx, "reading the URL base (config/cluster) of "+mount+"/", mount+"/config/cluster")
	if err != nil {
		return a, err
	}
	if s != nil {
		a.Path, _ = s.Data["path"].(string)
		a.AIAPath, _ = s.Data["aia_path"].(string)
	}
	s, err = c.read(ctx, "reading the URLs (config/urls) of "+mount+"/", mount+"/config/urls")
	if err != nil {
		return a, err
	}
	if s != nil {
		a.Issuing = stringList(s.Data["issuing_certificates"])
		a.CRL = stringList(s.Data["crl_distribution_points"])
		a.Others = slices.Concat(stringList(s.Data["ocsp_servers"]), stringList(s.Data["delta_crl_distribution_points"]))
		a.Templating, _ = s.Data["enable_templating"].(bool)
	}
	return a, nil
}

// checkURLBase accepts an absolute http(s) URL, with a path prefix if Vault
// sits behind one, that can be put in front of /v1/<mount>.
func checkURLBase(base string) error {
	u, err := url.Parse(base)
	switch {
	case err != nil:
		return fmt.Errorf("not a URL: %w", err)
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("want an http or https address such as https://vault.example.com:8200")
	case u.Host == "":
		return fmt.Errorf("no host")
	case u.User != nil || strings.ContainsAny(base, "?#"):
		return fmt.Errorf("want a bare address, without user, query or fragment")
	case strings.Contains(base, "{{"):
		return fmt.Errorf("want an address, not a template")
	}
	return nil
}

// mountURL is the mount's API address under base.
func mountURL(base, mount string) string {
	return strings.TrimRight(base, "/") + "/v1/" + mount
}

func resolveAll(a aiaConfig, urls []string, issuer string) []string {
	if len(urls) == 0 {
		return []string{"(none)"}
	}
	out := make([]string, len(urls))
	for i, u := range urls {
		out[i] = a.resolve(u, issuer)
	}
	return out
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

func orUnset(s string) string {
	if s == "" {
		return "unset"
	}
	return s
}
