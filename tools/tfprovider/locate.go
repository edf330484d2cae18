package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// schemaDirEnv names the environment variable that points at the folder of
// schema files; without it the folder is looked for as shared/terraform above
// the working directory and above the executable.
const schemaDirEnv = "PAYMETER_TF_SCHEMA_DIR"

// findSchemaFile returns the path of the newest schema file for providerType.
// It returns an error naming the folders it searched when there is none.
func findSchemaFile(providerType string) (string, error) {
	var dirs []string
	if dir := os.Getenv(schemaDirEnv); dir != "" {
		dirs = append(dirs, dir)
	} else {
		if wd, err := os.Getwd(); err == nil {
			dirs = append(dirs, sharedDirsAbove(wd)...)
		}
		if exe, err := os.Executable(); err == nil {
			dirs = append(dirs, sharedDirsAbove(filepath.Dir(exe))...)
		}
	}
	for _, dir := range dirs {
		path, err := schemaFileIn(dir, providerType)
		if err == nil {
			return path, nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			return "", err
		}
	}
	return "", fmt.Errorf("no %s-<version>.schema.json.gz found (set %s; searched %s): %w",
		providerType, schemaDirEnv, strings.Join(dirs, ", "), os.ErrNotExist)
}

// sharedDirsAbove lists <ancestor>/shared/terraform for dir and each of its
// ancestors, nearest first.
func sharedDirsAbove(dir string) []string {
	var dirs []string
	for {
		dirs = append(dirs, filepath.Join(dir, "shared", "terraform"))
		parent := filepath.Dir(dir)
		if parent == dir {
			return dirs
		}
		dir = parent
	}
}

// schemaFileIn returns the schema file for providerType in dir, the highest
// version if there are several. It returns an error wrapping os.ErrNotExist
// when dir holds none.
func schemaFileIn(dir, providerType string) (string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", err
	}
	pattern := regexp.MustCompile(`^` + regexp.QuoteMeta(providerType) + `-([0-9][0-9.]*)\.schema\.json\.gz$`)
	var best string
	var bestVersion []int
	for _, e := range entries {
		m := pattern.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		v := parseVersion(m[1])
		if best == "" || slices.Compare(v, bestVersion) > 0 {
			best, bestVersion = e.Name(), v
		}
	}
	if best == "" {
		return "", fmt.Errorf("%s: no schema for %s: %w", dir, providerType, os.ErrNotExist)
	}
	return filepath.Join(dir, best), nil
}

func parseVersion(s string) []int {
	var v []int
	for part := range strings.SplitSeq(strings.Trim(s, "."), ".") {
		n, _ := strconv.Atoi(part)
		v = append(v, n)
	}
	return v
}
