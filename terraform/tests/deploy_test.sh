#!/usr/bin/env bash
# Offline checks of deploy.sh's Stripe steps with stand-ins for gcloud and
# curl: secret values reach Secret Manager on stdin only (never a command
# line), a bad value stores nothing, the webhook endpoint is created for the
# events the handler applies at stripe-go's API version, an existing endpoint
# is not duplicated, and apply refuses to run before both secrets have values.
#
# Run by terraform/test.sh, which sets TF_CLI_CONFIG_FILE (for terraform
# console) and the TF_VAR_* inputs.
set -euo pipefail

tf_dir=$(cd "$(dirname "$0")/.." && pwd)
root=$(cd "$tf_dir/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

fail() { echo "deploy_test: FAIL: $*" >&2; [ ! -s "$work/log" ] || sed 's/^/  log: /' "$work/log" >&2; exit 1; }

# A copy of the deploy tree: deploy.sh reads terraform.tfvars beside itself
# and go.mod above it.
mkdir -p "$work/repo/terraform" "$work/bin"
cp "$tf_dir"/*.tf "$tf_dir/deploy.sh" "$tf_dir/build-source.sh" "$work/repo/terraform/"
cp "$root/go.mod" "$root/go.sum" "$work/repo/"
echo 'project_id = "acme-pay"' >"$work/repo/terraform/terraform.tfvars"
deploy=$work/repo/terraform/deploy.sh
url=https://europe-west2-acme-pay.cloudfunctions.net/webhook

# gcloud: secret-key has a version unless NO_VERSIONS is set; every add logs
# its stdin. curl: lists ENDPOINTS, answers a create with a signing secret.
cat >"$work/bin/gcloud" <<'EOF'
#!/usr/bin/env bash
echo "gcloud $*" >>"$LOG"
case "$1 $2 $3" in
"secrets versions list") [ -n "${NO_VERSIONS:-}" ] || echo "projects/1/secrets/$4/versions/1" ;;
"secrets versions access") printf 'sk_test_fromsm' ;;
"secrets versions add") echo "stdin: $(cat)" >>"$LOG" ;;
esac
EOF
cat >"$work/bin/curl" <<'EOF'
#!/usr/bin/env bash
echo "curl $* | stdin: $(cat)" >>"$LOG"
case "$*" in
*" GET "*) printf '{\n  "data": [\n    {\n      "url": "%s"\n    }\n  ]\n}\n' "${ENDPOINTS:-https://elsewhere.example/hook}" ;;
*" POST "*) printf '{\n  "id": "we_1",\n  "secret": "whsec_fromstripe",\n  "url": "x"\n}\n' ;;
esac
EOF
cat >"$work/bin/terraform" <<EOF
#!/usr/bin/env bash
case "\$*" in *console*) exec $(command -v terraform) "\$@" ;; esac
echo "terraform \$*" >>"\$LOG"
EOF
chmod +x "$work/bin/"*
export PATH="$work/bin:$PATH" LOG="$work/log"
run() { : >"$LOG"; "$deploy" "$@" >"$work/out" 2>&1; }

STRIPE_SECRET_KEY=sk_test_typed run stripe-key || fail "stripe-key: $(cat "$work/out")"
grep -qx 'stdin: sk_test_typed' "$LOG" || fail "stripe-key did not store the key through stdin"
grep -v '^stdin:' "$LOG" | grep -q sk_test_typed && fail "stripe-key put the key on a command line"

STRIPE_SECRET_KEY=pk_test_wrong run stripe-key && fail "stripe-key accepted a publishable key"
grep -q 'versions add' "$LOG" && fail "stripe-key stored a bad value"

STRIPE_SECRET_KEY=rk_test_restricted run stripe-key || fail "stripe-key refused a restricted key: $(cat "$work/out")"
STRIPE_WEBHOOK_SECRET=whsec_fromdashboard run stripe-webhook-secret || fail "stripe-webhook-secret: $(cat "$work/out")"
grep -qx 'stdin: whsec_fromdashboard' "$LOG" || fail "stripe-webhook-secret did not store the secret through stdin"
STRIPE_WEBHOOK_SECRET=sk_test_oops run stripe-webhook-secret && fail "stripe-webhook-secret accepted a key that is not whsec_"

run stripe-webhook || fail "stripe-webhook: $(cat "$work/out")"
post=$(grep ' POST ' "$LOG") || fail "stripe-webhook created no endpoint"
for want in "url=$url" "api_version=2023-10-16" enabled_events[]=checkout.session.completed enabled_events[]=invoice.paid \
  enabled_events[]=invoice.payment_failed enabled_events[]=customer.subscription.updated \
  enabled_events[]=customer.subscription.deleted enabled_events[]=charge.refunded enabled_events[]=charge.dispute.created; do
  [[ " ${post%%|*} " == *" $want "* ]] || fail "stripe-webhook request lacks $want"
done
[ "$(grep -o 'enabled_events' <<<"$post" | wc -l)" = 7 ] || fail "stripe-webhook must subscribe to exactly the 7 applied events"
grep -q 'stdin: user = "sk_test_fromsm:"' "$LOG" || fail "stripe-webhook did not pass the key to curl on stdin"
grep -v 'stdin:' "$LOG" | grep -q sk_test_fromsm && fail "stripe-webhook put the key on a command line"
grep -qx 'stdin: whsec_fromstripe' "$LOG" || fail "stripe-webhook did not store the signing secret"

ENDPOINTS=$url run stripe-webhook && fail "stripe-webhook made a second endpoint for $url"
grep -q ' POST ' "$LOG" && fail "stripe-webhook posted despite an existing endpoint"

NO_VERSIONS=1 run apply && fail "apply ran without secret values"
grep -q '^terraform' "$LOG" && fail "apply ran terraform before the secrets had values"
grep -q 'stripe-key' "$work/out" || fail "apply did not say how to add the secrets"

echo "deploy_test: ok"
