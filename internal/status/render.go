package status

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"sigs.k8s.io/yaml"
)

// Render writes the report as "table", "json" or "yaml".
func Render(w io.Writer, r Report, format string) error {
	switch format {
	case "", "table":
		return Table(w, r)
	case "json":
		b, err := json.MarshalIndent(r, "", "  ")
		if err != nil {
			return fmt.Errorf("rendering status as json: %w", err)
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	case "yaml":
		b, err := yaml.Marshal(r)
		if err != nil {
			return fmt.Errorf("rendering status as yaml: %w", err)
		}
		_, err = w.Write(b)
		return err
	}
	return fmt.Errorf("unknown output format %q: want table, json or yaml", format)
}

// Table writes the human form: a summary line per cluster, the details of
// each, the trust matrix, the warnings and a verdict.
func Table(w io.Writer, r Report) error {
	ew := &errWriter{w: w}
	tw := tabwriter.NewWriter(ew, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CLUSTER\tCACERTS\tMANAGED\tLAYOUT\tTRUST DOMAIN\tEXPIRES IN\tCHAIN\tSOURCE READY\tCRL\tCRL NEXT UPDATE\tREVOKED\tROTATION")
	for _, c := range r.Clusters {
		crl, next, revoked := crlColumns(c)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", c.Context, presence(c), yesNo(c.Managed, c.Present), dash(c.Layout),
			trustDomain(c), expires(c), chain(c), sourceReady(c), crl, next, revoked, rotationLabel(c))
	}
	tw.Flush()
	for _, c := range r.Clusters {
		fmt.Fprintf(ew, "\n%s:\n", c.Context)
		dw := tabwriter.NewWriter(ew, 0, 4, 1, ' ', 0)
		if !c.Reachable {
			fmt.Fprintf(dw, "  error:\t%s\n", strings.Join(c.Problems, "; "))
			dw.Flush()
			continue
		}
		if i := c.Intermediate; i != nil {
			fmt.Fprintf(dw, "  intermediate:\t%s\n", i.Subject)
			fmt.Fprintf(dw, "  serial:\t%s\n", i.Serial)
			fmt.Fprintf(dw, "  not after:\t%s (%s left)\n", i.NotAfter.Format(time.RFC3339), i.TimeLeft)
			fmt.Fprintf(dw, "  name constraints:\t%s\n", constraints(i))
		}
		if c.RootsError != "" {
			fmt.Fprintf(dw, "  roots:\tunreadable: %s\n", c.RootsError)
		}
		if len(c.RootFingerprints) > 0 {
			for k, fp := range c.RootFingerprints {
				label := "  roots (SHA-256):"
				if k > 0 {
					label = ""
				}
				fmt.Fprintf(dw, "%s\t%s\n", label, fp)
			}
		}
		if c.Present {
			v := "valid"
			if !c.Valid {
				v = "INVALID: " + c.ValidationError
			}
			fmt.Fprintf(dw, "  chain:\t%s\n", v)
		}
		if l := crlLine(c); l != "" {
			fmt.Fprintf(dw, "  crl:\t%s\n", l)
		}
		if m := c.Mesh; m != nil {
			how := ""
			if m.Defaulted {
				how = ", istiod's default"
			}
			fmt.Fprintf(dw, "  istio mesh:\ttrust domain %s%s, aliases %s (%s)\n", m.TrustDomain, how, m.AliasesString(), m.ConfigMap)
		} else if c.MeshNote != "" {
			fmt.Fprintf(dw, "  istio mesh:\t%s\n", c.MeshNote)
		}
		for _, rt := range c.ReviewerTokens {
			when := fmt.Sprintf("expires %s (%s left)", rt.Expires.Format(time.RFC3339), rt.TimeLeft)
			if ago, expired := strings.CutPrefix(rt.TimeLeft, "-"); expired {
				when = fmt.Sprintf("EXPIRED %s (%s ago)", rt.Expires.Format(time.RFC3339), ago)
			}
			fmt.Fprintf(dw, "  vault reviewer:\tauth/%s stores a token of ServiceAccount %s, %s\n", rt.Mount, rt.ServiceAccount, when)
		}
		if c.ReviewersError != "" {
			fmt.Fprintf(dw, "  vault reviewer:\tnot checked: %s\n", c.ReviewersError)
		}
		if s := c.Source; s != nil {
			line := fmt.Sprintf("Certificate %s/%s Ready=%s", s.Namespace, s.Name, s.Ready)
			if s.Ready != "True" && s.Reason != "" {
				line += " (" + s.Reason + ")"
			}
			fmt.Fprintf(dw, "  source:\t%s\n", line)
		} else {
			fmt.Fprintf(dw, "  source:\tno Certificate opted in\n")
		}
		for _, p := range c.Problems {
			fmt.Fprintf(dw, "  problem:\t%s\n", p)
		}
		dw.Flush()
	}
	fmt.Fprintln(ew, "\nTRUST MATRIX (does the row's intermediate chain to a root in the column's root bundle? \"-\": nothing to check)")
	mw := tabwriter.NewWriter(ew, 0, 4, 2, ' ', 0)
	fmt.Fprintf(mw, "\t%s\n", strings.Join(r.Matrix.Contexts, "\t"))
	for i, row := range r.Matrix.Trusts {
		cells := make([]string, len(row))
		for j, ok := range row {
			switch {
			case ok:
				cells[j] = "yes"
			case !r.Clusters[i].Valid || len(r.Clusters[j].RootFingerprints) == 0:
				// Nothing to check: the row has no valid chain or the column no roots.
				cells[j] = "-"
			default:
				cells[j] = "NO"
			}
		}
		fmt.Fprintf(mw, "%s\t%s\n", r.Matrix.Contexts[i], strings.Join(cells, "\t"))
	}
	mw.Flush()
	if len(r.Warnings) > 0 {
		fmt.Fprintln(ew, "\nWARNINGS")
		for _, wn := range r.Warnings {
			fmt.Fprintf(ew, "  - %s\n", wn)
		}
	}
	fmt.Fprintln(ew)
	fmt.Fprintln(ew, Verdict(r))
	return ew.err
}

// Verdict is the report's one-line conclusion.
func Verdict(r Report) string {
	switch {
	case r.Healthy:
		return fmt.Sprintf("HEALTHY: %d cluster(s), shared trust across all of them", len(r.Clusters))
	case len(r.Unhealthy()) > 0:
		return "UNHEALTHY: " + strings.Join(r.Unhealthy(), ", ")
	case len(r.Clusters) == 0:
		return "UNHEALTHY: no cluster checked"
	default:
		return fmt.Sprintf("UNHEALTHY: %d warning(s)", len(r.Warnings))
	}
}

func presence(c Cluster) string {
	switch {
	case !c.Reachable:
		return "unreachable"
	case !c.Present:
		return "missing"
	}
	return "present"
}

func yesNo(b, known bool) string {
	if !known {
		return "-"
	}
	if b {
		return "yes"
	}
	return "no"
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func trustDomain(c Cluster) string {
	if c.Intermediate == nil || len(c.Intermediate.PermittedURIDomains) == 0 {
		return "-"
	}
	return strings.Join(c.Intermediate.PermittedURIDomains, ",")
}

func expires(c Cluster) string {
	if c.Intermediate == nil {
		return "-"
	}
	return c.Intermediate.TimeLeft
}

func chain(c Cluster) string {
	switch {
	case !c.Present:
		return "-"
	case c.Valid:
		return "valid"
	}
	return "BROKEN"
}

func sourceReady(c Cluster) string {
	if c.Source == nil {
		return "-"
	}
	return c.Source.Ready
}

// crlColumns are the summary's CRL columns: present, earliest nextUpdate
// from now, revoked serials.
func crlColumns(c Cluster) (string, string, string) {
	switch {
	case c.CRL == nil:
		return "-", "-", "-"
	case !c.CRL.Present:
		return "missing", "-", "-"
	case c.CRL.Error != "":
		return "BROKEN", "-", "-"
	}
	return "present", dash(c.CRL.NextUpdateIn), fmt.Sprint(c.CRL.RevokedSerials)
}

func crlLine(c Cluster) string {
	switch {
	case c.CRL == nil:
		return ""
	case !c.CRL.Present:
		return "none in cacerts"
	case c.CRL.Error != "":
		return "unreadable: " + c.CRL.Error
	}
	return fmt.Sprintf("%d CRLs, %d revoked serial(s), earliest nextUpdate %s (%s left)", c.CRL.CRLs, c.CRL.RevokedSerials,
		c.CRL.NextUpdate.Format(time.RFC3339), c.CRL.NextUpdateIn)
}

func constraints(i *CertInfo) string {
	var parts []string
	if len(i.PermittedURIDomains) > 0 {
		parts = append(parts, "URI "+strings.Join(i.PermittedURIDomains, ", "))
	} else {
		parts = append(parts, "no URI constraint")
	}
	if i.MaxPathLen >= 0 {
		parts = append(parts, fmt.Sprintf("max path length %d", i.MaxPathLen))
	}
	return strings.Join(parts, "; ")
}

// errWriter keeps the first write error so the table code can stay linear.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n, err := e.w.Write(p)
	e.err = err
	return n, err
}
