package main

import (
	"github.com/ferry-project/ferry/lab"
)

// hidden handles the entry points the lab re-executes itself through. They exec another program
// on success, so they only return with an error.
func hidden(args []string) (bool, error) {
	switch args[0] {
	case lab.EnterCmd, lab.CgroupExecCmd:
		if len(args) < 3 || args[2] != "--" {
			return true, errUsage(args[0] + " HOST -- CMD...")
		}
		if args[0] == lab.EnterCmd {
			return true, lab.Enter(args[1], args[3:])
		}
		return true, lab.CgroupExec(args[1], args[3:])
	}
	return false, nil
}

type errUsage string

func (e errUsage) Error() string { return "usage: ferry-lab " + string(e) }
