package checkpoint

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// RuncState is the part of runc's state.json (libcontainer's saved container) that CRIU needs.
// ferry reads it instead of re-deriving runc's config from the OCI spec, so that the dump
// describes the container exactly as the `runc restore` on the target will.
type RuncState struct {
	InitProcessPid      int               `json:"init_process_pid"`
	CgroupPaths         map[string]string `json:"cgroup_paths"`
	ExternalDescriptors []string          `json:"external_descriptors"`
	Config              struct {
		Rootfs string `json:"rootfs"`
		Mounts []struct {
			Source      string `json:"source"`
			Destination string `json:"destination"`
			Device      string `json:"device"`
		} `json:"mounts"`
		MaskPaths []string `json:"mask_paths"`
		Devices   []struct {
			Path string `json:"path"`
		} `json:"devices"`
		Namespaces []struct {
			Type string `json:"type"`
			Path string `json:"path"`
		} `json:"namespaces"`
	} `json:"config"`
}

// LoadRuncState reads dir/state.json (dir is runc's directory of the container).
func LoadRuncState(dir string) (*RuncState, error) {
	b, err := os.ReadFile(filepath.Join(dir, "state.json"))
	if err != nil {
		return nil, fmt.Errorf("runc state of the container: %w", err)
	}
	var st RuncState
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("parse %s/state.json: %w", dir, err)
	}
	if st.InitProcessPid <= 0 || st.Config.Rootfs == "" {
		return nil, fmt.Errorf("%s/state.json has no init pid or rootfs", dir)
	}
	return &st, nil
}

func (s *RuncState) namespacePath(typ string) string {
	for _, n := range s.Config.Namespaces {
		if n.Type == typ {
			return n.Path
		}
	}
	return ""
}

func (s *RuncState) hasNamespace(typ string) bool {
	for _, n := range s.Config.Namespaces {
		if n.Type == typ {
			return true
		}
	}
	return false
}
