#!/usr/bin/env bash
# Offline checks of the Terraform configuration, for `make test`:
#   terraform fmt -check, terraform validate, terraform test (tests/*.tftest.hcl)
# against the real google and google-beta provider schemas, plus a negative
# control proving that a misspelled argument fails validation.
#
# The provider registry is out of reach here, so the schemas come from
# ../shared/terraform (or $PAYMETER_TF_SCHEMA_DIR), served by the schema-only
# provider in tools/tfprovider through dev_overrides. Where those files are
# absent (a connected machine), `terraform init` fetches the real providers and
# the same checks run against them.
set -euo pipefail

tf_dir=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$tf_dir/.." && pwd)
cache=${PAYMETER_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/paymeter}/terraform
mkdir -p "$cache"
work=$(mktemp -d)
deploy_pid=
trap '[ -z "$deploy_pid" ] || kill "$deploy_pid" 2>/dev/null; rm -rf "$work"' EXIT
start=$(date +%s%N)

step() { printf 'terraform/test.sh: %s\n' "$*"; }
ms_since() { echo $((($(date +%s%N) - $1) / 1000000)); }

# run LABEL CMD...: runs CMD quietly, printing its output only when it fails,
# and its time when PAYMETER_TF_TIMING is set.
run() {
  local label=$1 t0
  shift
  t0=$(date +%s%N)
  if ! "$@" >"$work/out" 2>&1; then
    cat "$work/out"
    step "FAIL: $label"
    exit 1
  fi
  [ -z "${PAYMETER_TF_TIMING:-}" ] || step "$(ms_since "$t0") ms  $label"
}

schema_dir=${PAYMETER_TF_SCHEMA_DIR:-$root/../shared/terraform}
export TF_IN_AUTOMATION=1 TF_INPUT=0 CHECKPOINT_DISABLE=1
if compgen -G "$schema_dir/google-[0-9]*.schema.json.gz" >/dev/null &&
  compgen -G "$schema_dir/google-beta-[0-9]*.schema.json.gz" >/dev/null; then
  export PAYMETER_TF_SCHEMA_DIR
  PAYMETER_TF_SCHEMA_DIR=$(cd "$schema_dir" && pwd)
  mode="schema-only provider, schemas from $PAYMETER_TF_SCHEMA_DIR"
  schema_only=1

  # The provider and its own tests. One binary serves both providers: it
  # reads its type from its file name.
  bin="$cache/providers"
  mkdir -p "$bin"
  (
    cd "$root/tools/tfprovider"
    run "go vet (tools/tfprovider)" go vet ./...
    run "go test (tools/tfprovider)" go test -count=1 ./...
    run "go build (tools/tfprovider)" go build -o "$work/terraform-provider-google" .
  )
  for name in google google-beta; do
    cp "$work/terraform-provider-google" "$work/terraform-provider-$name.new"
    mv -f "$work/terraform-provider-$name.new" "$bin/terraform-provider-$name"
  done
  cat >"$work/cli.tfrc" <<CONFIG
provider_installation {
  dev_overrides {
    "registry.terraform.io/hashicorp/google"      = "$bin"
    "registry.terraform.io/hashicorp/google-beta" = "$bin"
  }
  direct {}
}
CONFIG
  export TF_CLI_CONFIG_FILE="$work/cli.tfrc"
else
  mode="real providers from terraform init (no schema files in $schema_dir)"
  schema_only=0
  export TF_DATA_DIR="$cache/data"
  (cd "$tf_dir" && run "terraform init" terraform init -backend=false -input=false -no-color)
fi
step "$mode"

# The inputs terraform test reads: the real source zip (built as a deploy
# builds it) and the real rules file where it exists.
run "build-source.sh" "$tf_dir/build-source.sh" "$work/source.zip"
export TF_VAR_source_zip="$work/source.zip"
# The zip alone must hold every package the root package imports, as the Go
# buildpack builds it alone (go vet and go test compile the code itself).
unzip -Z1 "$work/source.zip" >"$work/zip.list"
grep -qx go.mod "$work/zip.list" || { step "FAIL: the source zip has no go.mod at its root"; exit 1; }
if grep -E '(^|/)(node_modules|\.emulators|\.git|\.terraform)/|\.tfstate|\.tfvars|_test\.go$|^(web|tools|terraform|cmd|scripts)/' "$work/zip.list"; then
  step "FAIL: the source zip holds the files above, which no function needs (see build-source.sh)"
  exit 1
fi
mkdir -p "$work/source"
run "unzip source" unzip -q "$work/source.zip" -d "$work/source"
(cd "$work/source" && run "source zip holds every package the root imports (go list -deps; see build-source.sh)" go list -mod=readonly -deps . )
# Every setting config/ reads is either set by Terraform, a Stripe secret, or
# local-only; a new one must be added to functions.tf (or to this list).
local_only=" TASKS_SECRET PORT MAX_BODY_BYTES "
settings=$(grep -o 'get("[A-Z_]*"' "$root/config/config.go" | cut -d'"' -f2 | sort -u)
[ -n "$settings" ] || { step "FAIL: found no get(\"NAME\", ...) settings in config/config.go"; exit 1; }
for name in $settings; do
  case $local_only in *" $name "*) continue ;; esac
  grep -qw "$name" "$tf_dir/functions.tf" "$tf_dir/secrets.tf" ||
    { step "FAIL: config/config.go reads $name, which terraform/functions.tf does not set"; exit 1; }
done

export TF_VAR_firestore_rules_file="$root/firestore.rules"

cd "$tf_dir"
run "terraform fmt -check -recursive (run terraform fmt -recursive terraform/)" terraform fmt -check -recursive -no-color
run "terraform validate" terraform validate -no-color

# deploy.sh's Stripe steps, with stand-ins for gcloud and curl, alongside
# terraform test (both spend much of their time starting providers). It
# evaluates the webhook URL with terraform console in a copy of this folder,
# which the schema-only provider serves without terraform init.
if [ "$schema_only" = 1 ]; then
  deploy_t0=$(date +%s%N)
  "$tf_dir/tests/deploy_test.sh" >"$work/deploy.out" 2>&1 &
  deploy_pid=$!
fi

run "terraform test" terraform test -no-color
result=$(grep -Eo '[0-9]+ passed, [0-9]+ failed' "$work/out" | tail -1)

# Negative control: the same configuration with one argument misspelled must
# fail validation, or the checks above prove nothing.
mkdir -p "$work/broken"
cp "$tf_dir"/*.tf "$work/broken/"
sed -i 's/^\(\s*\)available_memory\(\s*\)=/\1availabel_memory\2=/' "$work/broken/functions.tf"
grep -q availabel_memory "$work/broken/functions.tf" || { step "FAIL: negative control found nothing to misspell"; exit 1; }
t0=$(date +%s%N)
if (cd "$work/broken" && terraform validate -no-color >"$work/out" 2>&1); then
  step "FAIL: terraform validate accepted a misspelled argument (availabel_memory)"
  exit 1
fi
grep -q 'An argument named "availabel_memory" is not expected here' "$work/out" || {
  cat "$work/out"
  step "FAIL: terraform validate failed on the misspelling for another reason"
  exit 1
}
[ -z "${PAYMETER_TF_TIMING:-}" ] || step "$(ms_since "$t0") ms  negative control: misspelled argument rejected"

if [ -n "$deploy_pid" ]; then
  wait "$deploy_pid" || {
    deploy_pid=
    cat "$work/deploy.out"
    step "FAIL: deploy.sh Stripe steps (tests/deploy_test.sh)"
    exit 1
  }
  deploy_pid=
  [ -z "${PAYMETER_TF_TIMING:-}" ] || step "$(ms_since "$deploy_t0") ms  deploy.sh Stripe steps with stand-in gcloud and curl (tests/deploy_test.sh, in parallel)"
fi

step "fmt, validate, misspelling rejected, tests ok in $(ms_since "$start") ms"
echo "terraform: ${result:-0 passed, 1 failed}"
