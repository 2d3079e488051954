package vaultadmin

import (
	"context"
	"fmt"
	"strings"
)

// Systems a step changes.
const (
	SystemVault      = "vault"
	SystemKubernetes = "kubernetes"
	SystemFile       = "file"
)

// KnownAfterApply stands in a plan for a value only the apply learns, such
// as the ID Vault gives a root it generates.
const KnownAfterApply = "(known after apply)"

// Absent is the Before of something that does not exist yet, and the After
// of something a step deletes.
const Absent = "(absent)"

// Step is one thing an operation checks, and the change it makes if any.
// In a Plan, Changed means "will change"; in a result, "changed".
type Step struct {
	// Name says what is checked, e.g. "mount pki/" or "policy meshtrust-east".
	Name string `json:"name"`
	// System is where the change lands: vault, kubernetes or file, or
	// several of them joined by "+".
	System string `json:"system"`
	// Changed is true when the step writes.
	Changed bool `json:"changed"`
	// Detail is a one-line human description of the outcome.
	Detail string `json:"detail"`
	// Before and After describe the object as found and as left; empty for
	// a step that only checks.
	Before string `json:"before,omitempty"`
	After  string `json:"after,omitempty"`

	// run carries the step out during Apply. It may fill in values the
	// plan could only call KnownAfterApply. Nil for a step that only checks.
	run func(ctx context.Context, s *Step) error
}

// Plan is what an operation will do, in order.
type Plan struct {
	// Operation names it: bootstrap, enroll, unenroll, revoke or retire-root.
	Operation string `json:"operation"`
	// Steps are every check and change, in the order Apply runs them.
	Steps []Step `json:"steps"`
	// Changed is true when any step changes something.
	Changed bool `json:"changed"`
}

// check adds a step that changes nothing.
func (p *Plan) check(name, system, format string, args ...any) *Step {
	return p.add(Step{Name: name, System: system, Detail: fmt.Sprintf(format, args...)})
}

// change adds a step that writes through run.
func (p *Plan) change(s Step, run func(ctx context.Context, s *Step) error) *Step {
	s.Changed, s.run = true, run
	return p.add(s)
}

func (p *Plan) add(s Step) *Step {
	p.Steps = append(p.Steps, s)
	p.Changed = p.Changed || s.Changed
	return &p.Steps[len(p.Steps)-1]
}

// Changes counts the steps that change something.
func (p *Plan) Changes() int {
	n := 0
	for _, s := range p.Steps {
		if s.Changed {
			n++
		}
	}
	return n
}

// apply runs the steps in order and stops at the first failure. The steps
// it returns are the plan's, with what the apply learned filled in; a
// failed apply returns those that ran, the failed one last.
func (p *Plan) apply(ctx context.Context) ([]Step, error) {
	out := make([]Step, 0, len(p.Steps))
	for _, s := range p.Steps {
		if s.run != nil {
			if err := s.run(ctx, &s); err != nil {
				return append(out, s), err
			}
		}
		out = append(out, s)
	}
	return out, nil
}

// planThenApply is an operation run in one go: its plan, applied unless
// planning failed.
func planThenApply[R any, P interface {
	Apply(context.Context) (R, error)
}](p P, err error) func(context.Context) (R, error) {
	return func(ctx context.Context) (R, error) {
		if err != nil {
			var none R
			return none, err
		}
		return p.Apply(ctx)
	}
}

// Result is what an applied plan did.
type Result struct {
	// Steps are the plan's steps as they ran.
	Steps []Step `json:"steps"`
	// Changed is true when any step changed something.
	Changed bool `json:"changed"`
}

func resultOf(steps []Step) Result {
	r := Result{Steps: steps}
	for _, s := range steps {
		r.Changed = r.Changed || s.Changed
	}
	return r
}

// Changes counts the steps that changed something.
func (r Result) Changes() int { return (&Plan{Steps: r.Steps}).Changes() }

// join lists values for Before and After.
func join(vals ...string) string {
	var out []string
	for _, v := range vals {
		if v != "" {
			out = append(out, v)
		}
	}
	return strings.Join(out, ", ")
}
