package settings

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
)

// Controls are per-target or per-disk overrides of [target] settings, keyed
// by setting name. After normalisation a value is an int, a bool, or nil,
// which means "reset to the global value".
type Controls map[string]any

// ControlLimit describes one control for GET /api/settings.
type ControlLimit struct {
	Name string
	Type string // "int" or "bool"
	Min  int    // only for "int"
	Max  int    // only for "int"
}

// MarshalJSON produces upstream's shape: {"max": n, "min": n, "type": "int"}
// or {"type": "bool"}, keys sorted as Flask's jsonify sorts them.
func (l ControlLimit) MarshalJSON() ([]byte, error) {
	if l.Type != "int" {
		return json.Marshal(map[string]string{"type": l.Type})
	}
	return json.Marshal(map[string]any{"min": l.Min, "max": l.Max, "type": l.Type})
}

// ControlValue is the effective value of one control.
type ControlValue struct {
	Name     string
	Value    any  // int or bool
	Override bool // differs from the global value in the settings file
}

// String renders the value like gwcli: LIO bools as yes/no, and
// " (override)" appended when it differs from the global value.
func (v ControlValue) String() string {
	var s string
	switch x := v.Value.(type) {
	case bool:
		s = strings.ToLower(LIOYesNo(x))
	default:
		s = fmt.Sprint(x)
	}
	if v.Override {
		s += " (override)"
	}
	return s
}

// controlDefs returns the settings a scope's controls may override, in
// upstream order.
func controlDefs(g group) []*setting {
	var defs []*setting
	for i := range table {
		if table[i].group == g {
			defs = append(defs, &table[i])
		}
	}
	return defs
}

func controlNames(g group) []string {
	var names []string
	for _, d := range controlDefs(g) {
		names = append(names, d.name)
	}
	return names
}

// TargetControlNames lists the 11 target controls in upstream order.
func TargetControlNames() []string { return controlNames(groupTgt) }

// DiskControlNames lists the 4 disk (user:rbd tcmu) controls in upstream
// order.
func DiskControlNames() []string { return controlNames(groupTCMU) }

// IsClientControl reports whether a target control is an ACL attribute
// (dataout_timeout, nopin_response_timeout, nopin_timeout, cmdsn_depth)
// rather than a TPG parameter.
func IsClientControl(key string) bool {
	d := lookup(key)
	return d != nil && d.client
}

func controlLimits(g group) []ControlLimit {
	var limits []ControlLimit
	for _, d := range controlDefs(g) {
		l := ControlLimit{Name: d.name, Type: "bool"}
		if d.kind == kindInt {
			l = ControlLimit{Name: d.name, Type: "int", Min: d.min, Max: d.max}
		}
		limits = append(limits, l)
	}
	return limits
}

// TargetControlLimits describes the target controls for GET /api/settings.
func TargetControlLimits() []ControlLimit { return controlLimits(groupTgt) }

// DiskControlLimits describes the disk controls for GET /api/settings.
func DiskControlLimits() []ControlLimit { return controlLimits(groupTCMU) }

// NormalizeTargetControls validates target controls as received by PUT
// /api/target (decoded JSON: strings, numbers, bools or null). Errors are
// *ControlError with upstream's message texts, e.g. "expected integer >= 2
// for dataout_timeout"; "" and nil become nil (reset). Keys are checked in
// sorted order so the reported error does not depend on map order.
func NormalizeTargetControls(raw map[string]any) (Controls, error) {
	return normalizeControls(groupTgt, raw)
}

// NormalizeDiskControls is NormalizeTargetControls for the disk controls
// of PUT /api/disk.
func NormalizeDiskControls(raw map[string]any) (Controls, error) {
	return normalizeControls(groupTCMU, raw)
}

// ParseTargetControls decodes the JSON object of the "controls" form field
// and normalises it with NormalizeTargetControls.
func ParseTargetControls(text string) (Controls, error) {
	raw, err := decodeControls(text)
	if err != nil {
		return nil, err
	}
	return NormalizeTargetControls(raw)
}

// ParseDiskControls is ParseTargetControls for disk controls.
func ParseDiskControls(text string) (Controls, error) {
	raw, err := decodeControls(text)
	if err != nil {
		return nil, err
	}
	return NormalizeDiskControls(raw)
}

func decodeControls(text string) (map[string]any, error) {
	dec := json.NewDecoder(strings.NewReader(text))
	dec.UseNumber() // keep 1 and 1.0 apart, as Python's json does
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("invalid JSON: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("invalid JSON: data after the object")
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, errors.New("expected a JSON object")
	}
	return m, nil
}

func normalizeControls(g group, raw map[string]any) (Controls, error) {
	out := make(Controls, len(raw))
	for _, key := range slices.Sorted(maps.Keys(raw)) {
		d, err := controlDef(g, key)
		if err != nil {
			return nil, err
		}
		v, err := d.normalizeControl(raw[key])
		if err != nil {
			return nil, err
		}
		out[key] = v
	}
	return out, nil
}

func controlDef(g group, key string) (*setting, error) {
	if d := lookup(key); d != nil && d.group == g {
		return d, nil
	}
	// Upstream's text exactly (clients match on it): it does not name the
	// key; ControlError.Key does, for callers that want it.
	return nil, &ControlError{Key: key, Msg: "Supported controls: " + strings.Join(controlNames(g), ",")}
}

// normalizeControl mirrors upstream's Setting.normalize on a decoded JSON
// value. nil and "" mean reset and yield nil.
func (d *setting) normalizeControl(raw any) (any, error) {
	v, rule := d.normalizeAny(raw)
	if rule != "" {
		return nil, &ControlError{Key: d.name, Msg: rule + " for " + d.name}
	}
	return v, nil
}

func (d *setting) normalizeAny(raw any) (any, string) {
	if raw == nil || raw == "" {
		return nil, ""
	}
	if d.kind != kindInt {
		// Upstream applies str() and then the text rules. For numbers
		// that gives "1"/"0" for integers, and a failure for 1.0.
		switch v := raw.(type) {
		case bool:
			return v, ""
		case string:
			return d.parse(v)
		case json.Number:
			return d.parse(string(v))
		}
		if n, ok := asInteger(raw); ok {
			return d.parse(strconv.FormatFloat(n, 'f', -1, 64))
		}
		return nil, d.boolRule()
	}
	switch v := raw.(type) {
	case string:
		return d.parse(v)
	case json.Number:
		if n, ok := pyInt(string(v)); ok {
			return d.checkIntAny(n)
		}
		// Python's json gives a float for 1e3 or 5.0, and int() takes it.
		f, err := strconv.ParseFloat(string(v), 64)
		if err != nil {
			return nil, "expected integer"
		}
		raw = f
	case bool:
		// Python's int(True) is 1, but a bool where a number is due is
		// a client bug; reject it.
		return nil, "expected integer"
	}
	f, ok := asInteger(raw)
	if !ok {
		return nil, "expected integer"
	}
	return d.checkIntAny(int(max(-intLimit, min(f, intLimit))))
}

func (d *setting) checkIntAny(n int) (any, string) {
	v, rule := d.checkInt(n)
	if rule != "" {
		return nil, rule
	}
	return v, ""
}

// asInteger returns a Go number's value if it is integral. Unlike Python's
// int(5.7), a fraction is rejected rather than truncated.
func asInteger(raw any) (float64, bool) {
	var f float64
	switch v := raw.(type) {
	case int:
		f = float64(v)
	case int8:
		f = float64(v)
	case int16:
		f = float64(v)
	case int32:
		f = float64(v)
	case int64:
		f = float64(v)
	case uint:
		f = float64(v)
	case uint8:
		f = float64(v)
	case uint16:
		f = float64(v)
	case uint32:
		f = float64(v)
	case uint64:
		f = float64(v)
	case float32:
		f = float64(v)
	case float64:
		f = v
	default:
		return 0, false
	}
	if math.IsNaN(f) || math.IsInf(f, 0) || f != math.Trunc(f) {
		return 0, false
	}
	return f, true
}

// Split separates target controls into TPG parameters and client (ACL)
// settings, as the API applies them differently.
func (c Controls) Split() (tpg, client Controls) {
	tpg, client = Controls{}, Controls{}
	for k, v := range c {
		if IsClientControl(k) {
			client[k] = v
		} else {
			tpg[k] = v
		}
	}
	return tpg, client
}

func (s *Settings) globalControls(g group) Controls {
	out := Controls{}
	for _, d := range controlDefs(g) {
		out[d.name] = d.get(s)
	}
	return out
}

// TargetDefaults returns the global value of every target control (from the
// settings file), as GET /api/settings reports target_default_controls.
func (s *Settings) TargetDefaults() Controls { return s.globalControls(groupTgt) }

// DiskDefaults returns the global value of every disk control.
func (s *Settings) DiskDefaults() Controls { return s.globalControls(groupTCMU) }

// MergeTargetControls applies changes to the overrides stored in a target's
// "controls" and returns the new map (stored is not modified). As upstream,
// a nil change or one equal to the global value removes the override, so
// only differing keys are stored.
func (s *Settings) MergeTargetControls(stored map[string]any, changes Controls) (map[string]any, error) {
	return s.mergeControls(groupTgt, stored, changes)
}

// MergeDiskControls is MergeTargetControls for a disk's "controls".
func (s *Settings) MergeDiskControls(stored map[string]any, changes Controls) (map[string]any, error) {
	return s.mergeControls(groupTCMU, stored, changes)
}

func (s *Settings) mergeControls(g group, stored map[string]any, changes Controls) (map[string]any, error) {
	out := maps.Clone(stored)
	if out == nil {
		out = map[string]any{}
	}
	for _, key := range slices.Sorted(maps.Keys(changes)) {
		d, err := controlDef(g, key)
		if err != nil {
			return nil, err
		}
		v, err := d.normalizeControl(changes[key])
		if err != nil {
			return nil, err
		}
		if v == nil || sameValue(v, d.get(s)) {
			delete(out, key)
		} else {
			out[key] = v
		}
	}
	return out, nil
}

// TargetControlValues returns the effective value of every target control
// given a target's stored overrides, in upstream order. Stored keys that
// are not target controls are ignored, as upstream does.
func (s *Settings) TargetControlValues(stored map[string]any) ([]ControlValue, error) {
	return s.controlValues(groupTgt, stored)
}

// DiskControlValues is TargetControlValues for a disk's overrides.
func (s *Settings) DiskControlValues(stored map[string]any) ([]ControlValue, error) {
	return s.controlValues(groupTCMU, stored)
}

func (s *Settings) controlValues(g group, stored map[string]any) ([]ControlValue, error) {
	var out []ControlValue
	for _, d := range controlDefs(g) {
		global := d.get(s)
		cv := ControlValue{Name: d.name, Value: global}
		if raw, ok := stored[d.name]; ok {
			v, err := d.normalizeControl(raw)
			if err != nil {
				return nil, fmt.Errorf("stored control: %w", err)
			}
			if v != nil && !sameValue(v, global) {
				cv.Value, cv.Override = v, true
			}
		}
		out = append(out, cv)
	}
	return out, nil
}

// EffectiveTarget returns the target settings with a target's stored
// overrides applied.
func (s *Settings) EffectiveTarget(stored map[string]any) (TargetSettings, error) {
	eff, err := s.effective(groupTgt, stored)
	if err != nil {
		return TargetSettings{}, err
	}
	return eff.Target, nil
}

// EffectiveDisk returns the disk settings with a disk's stored overrides
// applied.
func (s *Settings) EffectiveDisk(stored map[string]any) (DiskSettings, error) {
	eff, err := s.effective(groupTCMU, stored)
	if err != nil {
		return DiskSettings{}, err
	}
	return eff.Disk, nil
}

func (s *Settings) effective(g group, stored map[string]any) (*Settings, error) {
	values, err := s.controlValues(g, stored)
	if err != nil {
		return nil, err
	}
	eff := &Settings{Target: s.Target, Disk: s.Disk}
	for _, v := range values {
		lookup(v.Name).set(eff, v.Value)
	}
	return eff, nil
}
