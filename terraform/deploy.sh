#!/usr/bin/env bash
# The deploy guide's steps (README.md in this folder), one subcommand each, in
# the order a first deploy runs them:
#
#   terraform/deploy.sh init            terraform init (downloads the real providers)
#   terraform/deploy.sh secrets         enable the APIs, create the empty secrets (Stripe, operator) and
#                                       the build account with its roles, print the webhook URL
#   terraform/deploy.sh stripe-key      add the Stripe secret key (STRIPE_SECRET_KEY or a prompt)
#   terraform/deploy.sh stripe-webhook  create the Stripe webhook endpoint, store its signing secret
#   terraform/deploy.sh stripe-webhook-secret
#                                       or store the signing secret of an endpoint made in the
#                                       Stripe Dashboard (STRIPE_WEBHOOK_SECRET or a prompt)
#   terraform/deploy.sh operator-secret store the operator API's secret (PAYMETER_OPERATOR_SECRET
#                                       or a prompt; at least 32 characters): your backends send it
#   terraform/deploy.sh apply           build the source zip, terraform apply everything
#   terraform/deploy.sh plans-sync      sync the plan catalog to Stripe and Firestore
#   terraform/deploy.sh web             build web/ and deploy it to Firebase Hosting
#   terraform/deploy.sh destroy         lift deletion protection and destroy everything
#
# Settings come from terraform/terraform.tfvars (project_id, region, ...).
# Secret values go straight from the prompt or the environment to Secret
# Manager: never to a file, a command line or Terraform state. Extra
# arguments go to terraform (apply, destroy) or the firebase CLI (web).
# FIREBASE names the firebase CLI (default: the pinned one in tools/emulators
# if installed, else firebase on the PATH).
set -euo pipefail

tf_dir=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$tf_dir/.." && pwd)
tf() { terraform -chdir="$tf_dir" "$@"; }
die() { echo "deploy.sh: $*" >&2; exit 1; }
say() { echo "deploy.sh: $*"; }
need() { command -v "$1" >/dev/null || die "needs $1 ($2)"; }

# The events payments/webhook.go applies; the endpoint sends only these.
stripe_events="checkout.session.completed invoice.paid invoice.payment_failed customer.subscription.updated
customer.subscription.deleted charge.refunded charge.dispute.created"

# tfvar NAME: a string variable from terraform.tfvars, if set there.
tfvar() {
  sed -n "s/^[[:space:]]*$1[[:space:]]*=[[:space:]]*\"\(.*\)\".*/\1/p" "$tf_dir/terraform.tfvars" 2>/dev/null | head -1
}

project() {
  local p
  p=$(tfvar project_id)
  [ -n "$p" ] || die "set project_id in terraform/terraform.tfvars (see README.md)"
  echo "$p"
}

# tf_eval EXPRESSION: evaluates a Terraform expression of the configuration (no
# state needed for one that depends on variables only), unquoted.
tf_eval() { echo "$1" | tf console | sed 's/^"\(.*\)"$/\1/'; }

# has_version SECRET: whether the secret exists and has an enabled version.
has_version() {
  [ -n "$(gcloud secrets versions list "$1" --project="$(project)" --filter=state:enabled --limit=1 --format='value(name)' 2>/dev/null)" ]
}

# add_version SECRET VALUE: adds VALUE as the secret's new version, through stdin.
add_version() {
  printf '%s' "$2" | gcloud secrets versions add "$1" --project="$(project)" --data-file=- >/dev/null
  say "added a version of $1"
}

# secret_value ENV PREFIXES: the value of ENV, or a prompt for it; it must
# start with one of the space-separated PREFIXES.
secret_value() {
  local value=${!1:-} prefix
  if [ -z "$value" ]; then
    read -rsp "$1 (${2// /... or }..., not echoed): " value </dev/tty
    echo >&2
  fi
  for prefix in $2; do
    case $value in "$prefix"?*) printf '%s' "$value" && return ;; esac
  done
  die "$1 should start with ${2// / or }"
}

# stripe METHOD PATH [curl args]: calls the Stripe API with the secret key
# from Secret Manager, passed to curl on stdin rather than the command line.
stripe() {
  local method=$1 path=$2 key
  shift 2
  key=$(gcloud secrets versions access latest --secret=stripe-secret-key --project="$(project)")
  printf 'user = "%s:"\n' "$key" |
    curl -sS --fail-with-body --config - -X "$method" "https://api.stripe.com/v1/$path" "$@"
}

# stripe_api_version: the Stripe API version of the stripe-go in go.mod, the
# only one the webhook handler accepts.
stripe_api_version() {
  local module dir
  module=$(grep -o 'github.com/stripe/stripe-go/v[0-9]*' "$root/go.mod" | head -1)
  dir=$(cd "$root" && go mod download "$module" && go list -m -f '{{.Dir}}' "$module")
  sed -n 's/.*apiVersion string = "\(.*\)".*/\1/p' "$dir/api_version.go"
}

cmd=${1:-}
shift || true
case $cmd in
init)
  need terraform "https://developer.hashicorp.com/terraform/install"
  tf init "$@"
  ;;
secrets)
  "$tf_dir/build-source.sh" >/dev/null
  # The build account and its roles too, now: IAM takes minutes to
  # propagate, and the first build (deploy.sh apply) must not outrun it.
  tf apply -target=google_secret_manager_secret.stripe -target=google_project_iam_member.build "$@"
  say "Stripe webhook URL: $(tf_eval 'local.function_url["webhook"]')"
  say "next: deploy.sh stripe-key, then deploy.sh stripe-webhook"
  ;;
stripe-key)
  need gcloud "the Google Cloud CLI"
  value=$(secret_value STRIPE_SECRET_KEY "sk_ rk_")
  add_version stripe-secret-key "$value"
  ;;
stripe-webhook-secret)
  need gcloud "the Google Cloud CLI"
  value=$(secret_value STRIPE_WEBHOOK_SECRET whsec_)
  add_version stripe-webhook-secret "$value"
  ;;
operator-secret)
  need gcloud "the Google Cloud CLI"
  value=${PAYMETER_OPERATOR_SECRET:-}
  if [ -z "$value" ]; then
    read -rsp "PAYMETER_OPERATOR_SECRET (at least 32 characters, e.g. from openssl rand -hex 32; not echoed): " value </dev/tty
    echo >&2
  fi
  [ ${#value} -ge 32 ] || die "the operator secret must be at least 32 characters"
  add_version paymeter-operator-secret "$value"
  ;;
stripe-webhook)
  need gcloud "the Google Cloud CLI"
  need curl "to call the Stripe API"
  has_version stripe-secret-key || die "add the Stripe secret key first: deploy.sh stripe-key"
  url=$(tf_eval 'local.function_url["webhook"]')
  case $url in https://*/webhook) ;; *) die "cannot work out the webhook URL (got: $url)" ;; esac
  existing=$(stripe GET "webhook_endpoints?limit=100") || die "cannot list the Stripe webhook endpoints: $existing"
  if tr -d ' ' <<<"$existing" | grep -qF "\"url\":\"$url\""; then
    die "Stripe already has an endpoint for $url, and shows its signing secret only in the Dashboard:
  copy it from Developers > Webhooks and run deploy.sh stripe-webhook-secret (or delete that endpoint and rerun)"
  fi
  version=$(stripe_api_version)
  [ -n "$version" ] || die "cannot read the Stripe API version of stripe-go"
  args=(-d "url=$url" -d "api_version=$version" -d "description=Paymeter")
  for e in $stripe_events; do args+=(-d "enabled_events[]=$e"); done
  response=$(stripe POST webhook_endpoints "${args[@]}") || die "Stripe refused the endpoint: $response"
  secret=$(printf '%s' "$response" | grep -o '"secret": *"whsec_[^"]*"' | sed 's/.*"\(whsec_[^"]*\)"/\1/')
  [ -n "$secret" ] || die "Stripe created the endpoint but returned no signing secret"
  add_version stripe-webhook-secret "$secret"
  say "registered $url in Stripe (API version $version) for: ${stripe_events//$'\n'/ }"
  ;;
apply)
  if command -v gcloud >/dev/null; then
    for s in stripe-secret-key stripe-webhook-secret paymeter-operator-secret; do
      has_version "$s" || die "secret $s has no value yet, and the functions refuse to start without it:
  run deploy.sh secrets, deploy.sh stripe-key, deploy.sh stripe-webhook and deploy.sh operator-secret first (README.md, step 3)"
    done
  fi
  "$tf_dir/build-source.sh"
  tf apply "$@"
  ;;
plans-sync)
  need gcloud "the Google Cloud CLI"
  p=$(project)
  STRIPE_SECRET_KEY=$(gcloud secrets versions access latest --secret=stripe-secret-key --project="$p")
  export STRIPE_SECRET_KEY GOOGLE_CLOUD_PROJECT=$p
  unset FIRESTORE_EMULATOR_HOST FIREBASE_AUTH_EMULATOR_HOST
  cd "$root" && go run ./cmd/plans sync "$@"
  ;;
web)
  need npm "Node.js 20.19 or later"
  p=$(project)
  firebase=${FIREBASE:-}
  if [ -z "$firebase" ]; then
    firebase=$root/tools/emulators/node_modules/.bin/firebase
    [ -x "$firebase" ] || firebase=firebase
  fi
  command -v "$firebase" >/dev/null || die "needs the firebase CLI (npm install -g firebase-tools, or set FIREBASE)"
  build_env=$(tf output -raw web_build_env) || die "no web_build_env output: run deploy.sh apply first"
  # A production build: no emulator, no other API origin, the default output folder.
  unset VITE_AUTH_EMULATOR_URL VITE_API_ORIGIN VITE_DEV_API FIREBASE_AUTH_EMULATOR_HOST AUTH_EMULATOR_PORT PAYMETER_WEB_OUT
  eval "$build_env"
  npm --prefix "$root/web" ci
  npm --prefix "$root/web" run build
  cd "$root" && "$firebase" deploy --only hosting --project "$p" "$@"
  ;;
destroy)
  "$tf_dir/build-source.sh" >/dev/null
  tf apply -var deletion_protection=false -target=google_firestore_database.main "$@"
  tf destroy -var deletion_protection=false "$@"
  ;;
*)
  sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'
  [ -z "$cmd" ] || exit 2
  ;;
esac
