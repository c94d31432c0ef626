package settings

import (
	"errors"
	"fmt"
	"unicode/utf8"
)

// KeyResolver returns the value stored under key in the mon config-key store
// (the equivalent of "ceph config-key get <key>"). It is the seam through
// which the caller, not this package, talks to the cluster.
type KeyResolver func(key string) (string, error)

// Connector builds a KeyResolver from the settings parsed so far, whose
// cluster_name, cluster_client_name and ceph_config_dir (CephConfPath) say
// how to reach the cluster. Values still pending hold their defaults.
type Connector func(partial *Settings) (KeyResolver, error)

type pendingRef struct {
	def     *setting
	section string // where it was written, for messages
	line    int
	key     string // config-key name, without ConfigKeyPrefix
}

// Load reads path like Read and then, only if some value is a config://
// reference, calls connect once and resolves them all with the resolver it
// returns. A nil connect makes such references an error.
func Load(path string, connect Connector) (*Settings, error) {
	s, err := Read(path)
	if err != nil {
		return nil, err
	}
	if len(s.pending) == 0 {
		return s, nil
	}
	if connect == nil {
		return nil, fmt.Errorf("%s: config:// values need a connection to the cluster, and none was given", path)
	}
	resolve, err := connect(s)
	if err != nil {
		return nil, fmt.Errorf("%s: connecting to the cluster to resolve config:// values: %w", path, err)
	}
	if err := s.ResolveConfigKeys(resolve); err != nil {
		return nil, err
	}
	return s, nil
}

// PendingConfigKeys lists, without duplicates and in file order, the
// config-key names that ResolveConfigKeys still has to look up.
func (s *Settings) PendingConfigKeys() []string {
	var keys []string
	seen := map[string]bool{}
	for _, p := range s.pending {
		if !seen[p.key] {
			seen[p.key] = true
			keys = append(keys, p.key)
		}
	}
	return keys
}

// ResolveConfigKeys replaces every config://<key> value with resolve(key),
// normalised and validated like a value written in the file. resolve is
// called at most once per distinct key, and not at all when nothing is
// pending. Unlike upstream, which silently uses "" when a lookup fails, a
// failed lookup is an error. Nothing is changed unless every value resolves.
func (s *Settings) ResolveConfigKeys(resolve KeyResolver) error {
	if len(s.pending) == 0 {
		return nil
	}
	if resolve == nil {
		return errors.New("settings: ResolveConfigKeys needs a resolver")
	}
	next := *s
	next.TrustedIPList = append([]string{}, s.TrustedIPList...)
	var errs []error
	cache := map[string]string{}
	// api_ssl_verify is forced off again below if api_secure resolves true.
	next.APISSLVerify = s.sslVerify
	for _, p := range s.pending {
		e := &Error{Path: s.path, Line: p.line, Section: p.section, Key: p.def.name, Secret: p.def.secret()}
		if !e.Secret {
			e.Value = ConfigKeyPrefix + p.key
		}
		text, ok := cache[p.key]
		if !ok {
			var err error
			text, err = resolve(p.key)
			if err != nil {
				e.Rule = fmt.Sprintf("config-key get %q failed", p.key)
				e.Err = err
				errs = append(errs, e)
				continue
			}
			cache[p.key] = text
		}
		// The Python gateways decode the value as UTF-8.
		if !utf8.ValidString(text) {
			e.Rule = fmt.Sprintf("config-key %q is not valid UTF-8", p.key)
			errs = append(errs, e)
			continue
		}
		v, rule := p.def.parse(text)
		if rule != "" {
			if !e.Secret {
				e.Value = text
			}
			e.Rule = rule + fmt.Sprintf(" (value of config-key %q)", p.key)
			errs = append(errs, e)
			continue
		}
		p.def.set(&next, v)
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	next.pending = nil
	next.sslVerify = next.APISSLVerify
	next.finish()
	*s = next
	return nil
}
