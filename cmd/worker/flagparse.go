package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"regexp"
)

// parse reads the SQSWORKER_ variables, then args (which win), turning
// the flag package's multi-line complaints into one line; the variables
// of a setting given two ways (oneSetting) are read only when args give
// it neither way. --help writes the grouped usage to out and returns
// flag.ErrHelp.
func (f *flagSet) parse(cmd *command, args []string, out io.Writer) error {
	deferred := map[string]bool{}
	for _, s := range f.settings {
		deferred[s.a], deferred[s.b] = true, true
	}
	if err := f.applyEnv(deferred); err != nil {
		return usageErr(err)
	}
	if err := f.fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			f.usage(out, cmd)
			return err
		}
		if m := badValue.FindStringSubmatch(err.Error()); m != nil {
			err = fmt.Errorf("--%s %s: %s", m[2], m[1], f.reason(m[2], m[3]))
		}
		return usageErr(fmt.Errorf("%w (see worker %s --help)", err, cmd.name))
	}
	if f.fs.NArg() > 0 {
		return usageErr(fmt.Errorf("unexpected argument %q (see worker %s --help)", f.fs.Arg(0), cmd.name))
	}
	if err := f.applySettings(); err != nil {
		return usageErr(err)
	}
	return nil
}

// badValue matches the flag package's complaint about a value, to say it
// the way --help spells the flag.
var badValue = regexp.MustCompile(`^invalid (?:boolean )?value ("[^"]*") for (?:flag )?-([\w-]+): (.*)$`)

// wantOf says what the flag package's own kinds of flag accept.
var wantOf = map[string]string{
	"*flag.intValue":      "want a whole number",
	"*flag.float64Value":  "want a number",
	"*flag.boolValue":     "want true or false",
	"*flag.durationValue": "want a duration such as 500ms, 30s or 5m",
}

// reason is why a flag's value was refused, in words for the flag's kind
// where the flag package only says "parse error".
func (f *flagSet) reason(name, reason string) string {
	if fl := f.fs.Lookup(name); fl != nil && reason == "parse error" {
		if want, ok := wantOf[fmt.Sprintf("%T", fl.Value)]; ok {
			return want
		}
	}
	return reason
}

// applyEnv sets every flag not in skip from its SQSWORKER_ variable.
func (f *flagSet) applyEnv(skip map[string]bool) error {
	var err error
	f.fs.VisitAll(func(fl *flag.Flag) {
		if v, ok := f.env(envName(fl.Name)); ok && err == nil && !skip[fl.Name] {
			err = f.setFromEnv(fl.Name, v)
		}
	})
	return err
}

func (f *flagSet) setFromEnv(name, v string) error {
	if err := f.fs.Set(name, v); err != nil {
		return fmt.Errorf("%s=%q: %s", envName(name), v, f.reason(name, err.Error()))
	}
	return nil
}

// oneSetting declares flags a and b (declared already) as two ways of
// giving one setting, what: the command line beats the environment
// whichever way each gives it, and both ways on the same level is a
// usage error, so that a variable left in the environment never picks
// the queue a command line meant to name otherwise.
func (f *flagSet) oneSetting(what, a, b string) {
	f.settings = append(f.settings, setting{what: what, a: a, b: b})
}

// applySettings, once args are parsed, refuses a setting given both ways
// on the command line, and, for a setting the command line does not
// give, reads its variables, refusing both set (an empty variable gives
// nothing).
func (f *flagSet) applySettings() error {
	given := map[string]bool{}
	f.fs.Visit(func(fl *flag.Flag) { given[fl.Name] = true })
	for _, s := range f.settings {
		switch {
		case given[s.a] && given[s.b]:
			va, vb := f.fs.Lookup(s.a).Value.String(), f.fs.Lookup(s.b).Value.String()
			return fmt.Errorf("--%s %s and --%s %s both name %s: drop --%s to use %s, or --%s to use %s",
				s.a, va, s.b, vb, s.what, s.b, va, s.a, vb)
		case given[s.a] || given[s.b]:
			continue
		}
		va, _ := f.env(envName(s.a))
		vb, _ := f.env(envName(s.b))
		switch {
		case va != "" && vb != "":
			return fmt.Errorf("%s=%s and %s=%s both name %s: unset %s to use %s, or %s to use %s (--%s or --%s on the command line overrides both)",
				envName(s.a), va, envName(s.b), vb, s.what, envName(s.b), va, envName(s.a), vb, s.a, s.b)
		case va != "":
			if err := f.setFromEnv(s.a, va); err != nil {
				return err
			}
		case vb != "":
			if err := f.setFromEnv(s.b, vb); err != nil {
				return err
			}
		}
	}
	return nil
}
