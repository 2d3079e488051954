package vaultcontract_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/hashicorp/hcl"
	"github.com/hashicorp/hcl/hcl/ast"
)

// This file re-states the part of Vault's ACL that decides whether a
// policy lets a write through (vault/acl.go AllowOperation and
// valueIn{Allowed,Denied}ParameterList, vault/policy.go parsePaths, Vault
// v1.21.0, non-legacy list matching). It is a cross-check that runs in
// milliseconds; the proof stays e2e/cli, which sends the same requests to a
// real Vault.

// aclPath is one path block as Vault's policy parser decodes it.
type aclPath struct {
	Capabilities []string                 `hcl:"capabilities"`
	Required     []string                 `hcl:"required_parameters"`
	Allowed      map[string][]interface{} `hcl:"allowed_parameters"`
	Denied       map[string][]interface{} `hcl:"denied_parameters"`
}

// parsePolicy decodes every path block of an HCL policy, keys lowercased
// as Vault does.
func parsePolicy(text string) (map[string]aclPath, error) {
	f, err := hcl.ParseString(text)
	if err != nil {
		return nil, err
	}
	list, ok := f.Node.(*ast.ObjectList)
	if !ok {
		return nil, fmt.Errorf("policy does not parse to an object list")
	}
	out := map[string]aclPath{}
	for _, item := range list.Filter("path").Items {
		if len(item.Keys) == 0 {
			continue
		}
		key, ok := item.Keys[0].Token.Value().(string)
		if !ok {
			return nil, fmt.Errorf("path key %v is not a string", item.Keys[0].Token.Text)
		}
		var p aclPath
		if err := hcl.DecodeObject(&p, item.Val); err != nil {
			return nil, fmt.Errorf("path %q: %w", key, err)
		}
		lower := func(m map[string][]interface{}) map[string][]interface{} {
			out := make(map[string][]interface{}, len(m))
			for k, v := range m {
				out[strings.ToLower(k)] = v
			}
			return out
		}
		p.Allowed, p.Denied = lower(p.Allowed), lower(p.Denied)
		out[strings.TrimPrefix(key, "/")] = p
	}
	return out, nil
}

// matchPath picks the block Vault applies to path: an exact one, else the
// longest glob (a trailing *) or segment-wildcard (+) match.
func matchPath(paths map[string]aclPath, path string) (aclPath, bool) {
	if p, ok := paths[path]; ok && !strings.HasSuffix(path, "*") {
		return p, true
	}
	best, found := "", false
	for pattern := range paths {
		if globMatches(pattern, path) && (!found || len(pattern) > len(best)) {
			best, found = pattern, true
		}
	}
	return paths[best], found
}

func globMatches(pattern, path string) bool {
	prefix := strings.HasSuffix(pattern, "*")
	pattern = strings.TrimSuffix(pattern, "*")
	ps, xs := strings.Split(pattern, "/"), strings.Split(path, "/")
	if len(xs) < len(ps) || !prefix && len(xs) != len(ps) {
		return false
	}
	for i, seg := range ps {
		last := i == len(ps)-1
		switch {
		case seg == "+":
		case last && prefix:
			if !strings.HasPrefix(xs[i], seg) {
				return false
			}
		case seg != xs[i]:
			return false
		}
	}
	return true
}

// vaultBody is body as Vault's HTTP layer hands it to the ACL: JSON-decoded
// with UseNumber, so numbers are json.Number and lists []interface{}.
func vaultBody(body map[string]any) map[string]interface{} {
	b, err := json.Marshal(body)
	if err != nil {
		panic(err)
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var out map[string]interface{}
	if err := d.Decode(&out); err != nil {
		panic(err)
	}
	return out
}

// allows reports whether the policy lets an update of path with data
// through, and if not, why.
func allows(policy, path string, data map[string]interface{}) (bool, string) {
	paths, err := parsePolicy(policy)
	if err != nil {
		return false, "policy does not parse: " + err.Error()
	}
	p, ok := matchPath(paths, path)
	switch {
	case !ok:
		return false, "no path block matches " + path
	case slices.Contains(p.Capabilities, "deny"):
		return false, "deny capability on " + path
	case !slices.Contains(p.Capabilities, "update"):
		return false, fmt.Sprintf("no update capability on %s (%v)", path, p.Capabilities)
	}
	for _, r := range p.Required {
		if _, ok := data[strings.ToLower(r)]; !ok {
			return false, "required parameter " + r + " missing"
		}
	}
	if len(data) == 0 {
		return true, ""
	}
	if len(p.Denied) > 0 {
		if _, ok := p.Denied["*"]; ok {
			return false, "every parameter denied"
		}
		for k, v := range data {
			if list, ok := p.Denied[strings.ToLower(k)]; ok && inDenied(v, list) {
				return false, fmt.Sprintf("parameter %s=%#v denied", k, v)
			}
		}
	}
	if len(p.Allowed) == 0 {
		return true, ""
	}
	_, all := p.Allowed["*"]
	if all && len(p.Allowed) == 1 {
		return true, ""
	}
	for k, v := range data {
		list, ok := p.Allowed[strings.ToLower(k)]
		if !ok && !all {
			return false, "parameter " + k + " not allowed"
		}
		if ok && !inAllowed(v, list) {
			return false, fmt.Sprintf("parameter %s=%#v (%T) not among the allowed values %#v", k, v, v, list)
		}
	}
	return true, ""
}

func inAllowed(v interface{}, list []interface{}) bool {
	if len(list) == 0 || inList(v, list) {
		return true
	}
	if vs, ok := v.([]interface{}); ok {
		for _, e := range vs {
			if !inList(e, list) {
				return false
			}
		}
		return true
	}
	if s, ok := v.(string); ok {
		for _, e := range commaSlice(s) {
			if !inList(e, list) {
				return false
			}
		}
		return true
	}
	return false
}

func inDenied(v interface{}, list []interface{}) bool {
	if len(list) == 0 || inList(v, list) {
		return true
	}
	if vs, ok := v.([]interface{}); ok {
		for _, e := range vs {
			if inList(e, list) {
				return true
			}
		}
	} else if s, ok := v.(string); ok {
		for _, e := range commaSlice(s) {
			if inList(e, list) {
				return true
			}
		}
	}
	return false
}

// commaSlice is parseutil.ParseCommaStringSlice on a string: empty gives
// none, else the comma-separated parts, each trimmed.
func commaSlice(s string) []string {
	if s == "" {
		return nil
	}
	parts := strings.Split(s, ",")
	for i := range parts {
		parts[i] = strings.TrimSpace(parts[i])
	}
	return parts
}

func inList(v interface{}, list []interface{}) bool {
	for _, el := range list {
		switch {
		case el == nil || v == nil:
			if el == v {
				return true
			}
		case isString(el):
			if vs, ok := v.(string); ok && globbedMatch(el.(string), vs) {
				return true
			}
		case reflect.DeepEqual(el, v):
			return true
		}
	}
	return false
}

func isString(v interface{}) bool { _, ok := v.(string); return ok }

// globbedMatch is strutil.GlobbedStringsMatch: a leading or trailing * in
// the policy value matches any prefix or suffix.
func globbedMatch(item, val string) bool {
	if len(item) < 2 {
		return val == item
	}
	pre, suf := strings.HasPrefix(item, "*"), strings.HasSuffix(item, "*")
	switch {
	case pre && suf:
		return strings.Contains(val, item[1:len(item)-1])
	case pre:
		return strings.HasSuffix(val, item[1:])
	case suf:
		return strings.HasPrefix(val, item[:len(item)-1])
	}
	return val == item
}
