package vault

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// Auth methods, also the values of the logins metric's method label.
const (
	MethodKubernetes = "kubernetes"
	MethodAppRole    = "approle"
	MethodToken      = "token"
)

// Auth says how a Client obtains its Vault token. Credentials are fetched
// through the functions at every login rather than captured once, so that a
// rotated Secret or a fresh service-account token is used on re-login.
type Auth struct {
	// Method is one of MethodKubernetes, MethodAppRole or MethodToken.
	Method string
	// MountPath is the auth mount, without the "auth/" prefix. Unused for
	// MethodToken.
	MountPath string
	// Credentials returns the body of the login request (for example role
	// and jwt). Unused for MethodToken.
	Credentials func(ctx context.Context) (map[string]any, error)
	// Token returns the static token for MethodToken.
	Token func(ctx context.Context) (string, error)
}

// KubernetesAuth logs in to auth/<mount>/login with a service-account JWT
// produced by jwt, which should mint a fresh short-lived token each time.
func KubernetesAuth(mount, role string, jwt func(ctx context.Context) (string, error)) Auth {
	return Auth{
		Method:    MethodKubernetes,
		MountPath: mount,
		Credentials: func(ctx context.Context) (map[string]any, error) {
			token, err := jwt(ctx)
			if err != nil {
				return nil, err
			}
			return map[string]any{"role": role, "jwt": token}, nil
		},
	}
}

// AppRoleAuth logs in to auth/<mount>/login with roleID and the secret ID
// produced by secretID.
func AppRoleAuth(mount, roleID string, secretID func(ctx context.Context) (string, error)) Auth {
	return Auth{
		Method:    MethodAppRole,
		MountPath: mount,
		Credentials: func(ctx context.Context) (map[string]any, error) {
			sid, err := secretID(ctx)
			if err != nil {
				return nil, err
			}
			return map[string]any{"role_id": roleID, "secret_id": sid}, nil
		},
	}
}

// TokenAuth uses the token produced by token as is.
func TokenAuth(token func(ctx context.Context) (string, error)) Auth {
	return Auth{Method: MethodToken, Token: token}
}

func (a Auth) validate() error {
	switch a.Method {
	case MethodKubernetes, MethodAppRole:
		if a.Credentials == nil {
			return fmt.Errorf("auth method %s has no credentials source", a.Method)
		}
		if strings.Trim(a.MountPath, "/") == "" {
			return fmt.Errorf("auth method %s has an empty mount path", a.Method)
		}
	case MethodToken:
		if a.Token == nil {
			return errors.New("auth method token has no token source")
		}
	default:
		return fmt.Errorf("unknown auth method %q", a.Method)
	}
	return nil
}

func (a Auth) loginPath() string {
	return "auth/" + strings.Trim(a.MountPath, "/") + "/login"
}
