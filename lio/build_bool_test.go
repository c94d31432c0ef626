package lio

import (
	"encoding/json"
	"testing"
)

// Package config decodes every number as json.Number, so a control stored as 0/1
// must read as a boolean.
func TestToBoolJSONNumber(t *testing.T) {
	for in, want := range map[json.Number]bool{"1": true, "0": false, "1.0": true} {
		got, err := toBool(in)
		if err != nil || got != want {
			t.Errorf("toBool(json.Number(%q)) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := toBool(json.Number("x")); err == nil {
		t.Error("toBool(json.Number(\"x\")): no error")
	}
}
