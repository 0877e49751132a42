package event

import (
	"encoding/json"
	"testing"
)

func TestMarshal(t *testing.T) {
	tests := []struct {
		name string
		in   any
		want string
	}{
		{"html characters stay one byte", map[string]string{"text": "<b>&</b>"}, `{"text":"<b>&</b>"}`},
		{"line breaks are escaped: one line", map[string]string{"text": "a\nb\r\u2028"}, `{"text":"a\nb\r\u2028"}`},
		{"no trailing newline", []int{1}, `[1]`},
	}
	for _, tt := range tests {
		got, err := Marshal(tt.in)
		if err != nil || string(got) != tt.want {
			t.Errorf("%s: Marshal = %s, %v; want %s", tt.name, got, err, tt.want)
		}
		var back any
		if err := json.Unmarshal(got, &back); err != nil {
			t.Errorf("%s: Marshal's output does not parse: %v", tt.name, err)
		}
	}
}
