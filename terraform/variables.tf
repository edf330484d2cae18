variable "project_id" {
  type        = string
  description = "ID of the Google Cloud project to deploy into. Billing must be enabled on it (Cloud Functions, Cloud Build and Identity Platform need it)."

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a Google Cloud project ID: 6-30 lowercase letters, digits and hyphens."
  }
}

variable "region" {
  type        = string
  description = "Region of the functions, the Cloud Tasks queue, the scheduler job and the source bucket. firebase.json names the same region in its Hosting rewrites; change both together."
  default     = "europe-west2"
}

variable "firestore_location" {
  type        = string
  description = "Location of the Firestore database, a region (europe-west2) or a multi-region (eur3, nam5). Null means var.region. It cannot be changed after the database exists."
  default     = null
}

variable "go_runtime" {
  type        = string
  description = "Cloud Functions Go runtime. go.mod says go 1.26.0, so go126 builds it with its own toolchain, whatever its patch release."
  default     = "go126"

  validation {
    condition     = can(regex("^go1[0-9]{2}$", var.go_runtime))
    error_message = "go_runtime must be a Cloud Functions Go runtime ID such as go126."
  }
}

variable "source_zip" {
  type        = string
  description = "Path of the function source zip that `make function-source` builds (terraform/build-source.sh), relative to this directory or absolute. Its MD5 names the uploaded object, so a code change redeploys every function."
  default     = "build/source.zip"
}

variable "firestore_rules_file" {
  type        = string
  description = "Path of the Firestore security rules released to the database, relative to this directory or absolute."
  default     = "../firestore.rules"
}

variable "min_instance_count" {
  type        = number
  description = "Instances each function keeps warm. 0 bills nothing while idle; 1 removes cold starts for about the price of one always-on instance per function."
  default     = 0

  validation {
    condition     = var.min_instance_count >= 0 && floor(var.min_instance_count) == var.min_instance_count
    error_message = "min_instance_count must be a whole number, 0 or more."
  }
}

variable "max_instance_count" {
  type        = number
  description = "Upper bound on instances per function: a ceiling on cost and on concurrent Firestore transactions."
  default     = 20

  validation {
    condition     = var.max_instance_count >= 1 && var.max_instance_count >= var.min_instance_count
    error_message = "max_instance_count must be at least 1 and at least min_instance_count."
  }
}

variable "hosting_site_id" {
  type        = string
  description = "Firebase Hosting site ID; the web app is served at https://<site>.web.app. Null means the project's default site, whose ID is the project ID."
  default     = null
}

variable "public_url" {
  type        = string
  description = "Origin the users open (PUBLIC_URL: Stripe Checkout returns there). Null means the Hosting site's default URL; set it once a custom domain is attached."
  default     = null
}

variable "extra_cors_origins" {
  type        = list(string)
  description = "Origins allowed to call the API from a browser besides public_url (CORS_ORIGINS). The web app is served from the same origin as the API and needs none."
  default     = []
}

variable "extra_authorized_domains" {
  type        = list(string)
  description = "Domains allowed to sign users in besides localhost and the Firebase Hosting domains, for example a custom domain."
  default     = []
}

variable "meter_costs" {
  type        = map(number)
  description = "Credits each metered path costs (METER_COSTS)."
  default     = { "/api/meter" = 1 }
}

variable "meter_upstreams" {
  type = map(object({
    url      = string
    service  = optional(string)
    location = optional(string)
    project  = optional(string)
  }))
  description = "METER_UPSTREAMS: metered path prefixes and the operator's services behind them, like { \"/v1/\" = { url = \"https://search-abc-uc.a.run.app\", service = \"search\" } }. With service (and location, project; default var.region, var.project_id) the functions' service account gets roles/run.invoker on that Cloud Run service. Each prefix also needs a firebase.json rewrite (\"/v1/**\") to the meter function."
  default     = {}
  validation {
    condition     = alltrue([for prefix, up in var.meter_upstreams : startswith(prefix, "/") && !startswith(prefix, "/api/") && can(regex("^https?://[^/?]+", up.url))])
    error_message = "Each meter_upstreams prefix starts with / (outside /api/) and each url is http(s)://host[/path]."
  }
}

variable "meter_upstream_timeout" {
  type        = string
  description = "METER_UPSTREAM_TIMEOUT: the longest an upstream may take to answer; past it the credits go back and the consumer gets 504."
  default     = "30s"
}

variable "meter_charge_on" {
  type        = string
  description = "METER_CHARGE_ON: non5xx charges any upstream answer below 500; 2xx charges only 2xx answers."
  default     = "non5xx"
  validation {
    condition     = contains(["non5xx", "2xx"], var.meter_charge_on)
    error_message = "meter_charge_on must be non5xx or 2xx."
  }
}

variable "log_format" {
  type        = string
  description = "Log format of the functions (LOG_FORMAT): json for Cloud Logging, text for people."
  default     = "json"

  validation {
    condition     = contains(["json", "text"], var.log_format)
    error_message = "log_format must be json or text."
  }
}

variable "reconcile_schedule" {
  type        = string
  description = "Cron schedule of the daily sweep that calls TaskReconcile (re-arms missed Free grants, expires grants)."
  default     = "17 3 * * *"
}

variable "reconcile_time_zone" {
  type        = string
  description = "Time zone of reconcile_schedule, as a tz database name."
  default     = "Etc/UTC"
}

variable "google_oauth_client_id" {
  type        = string
  description = "OAuth 2.0 web client ID for Google sign-in. Empty leaves Google sign-in off (email and password still work); see the deploy guide for creating one."
  default     = ""
}

variable "google_oauth_client_secret" {
  type        = string
  description = "Secret of google_oauth_client_id. Identity Platform needs it, so it is kept in Terraform state (marked sensitive); pass it as TF_VAR_google_oauth_client_secret, not in a file."
  default     = ""
  sensitive   = true
}

variable "deletion_protection" {
  type        = bool
  description = "Protects the Firestore database from deletion. Set false and apply before `terraform destroy`."
  default     = true
}

variable "labels" {
  type        = map(string)
  description = "Labels added to every resource that takes labels."
  default     = { app = "paymeter" }
}

variable "meter_mode" {
  type        = string
  description = "Metering (METER_MODE): lease, credit leases per instance with one journal write per flush, or txn, one Firestore transaction per call (docs/cost.md)."
  default     = "lease"
  validation {
    condition     = contains(["txn", "lease"], var.meter_mode)
    error_message = "meter_mode must be txn or lease."
  }
}

variable "lease_ttl" {
  type        = string
  description = "Lease mode: a credit lease's lifetime (LEASE_TTL), the longest a crashed instance strands its unused credits."
  default     = "30s"
}

variable "lease_idle" {
  type        = string
  description = "Lease mode: a lease unused this long goes back to the balance at the instance's next call (LEASE_IDLE). A busy instance renews its leases with every journal write, so this, not lease_ttl, bounds how long an idle lease holds credits there (an instance short of credits takes back other instances' leases unused for 5 s)."
  default     = "5m"
}

variable "lease_max_block" {
  type        = number
  description = "Lease mode: the most credits one lease takes (LEASE_MAX_BLOCK), 10 to 1000000."
  default     = 1000
}

variable "require_verified_email" {
  type        = bool
  description = "REQUIRE_VERIFIED_EMAIL: a password account gets no Free credits until its email is verified (Google sign-ins are verified). Turn off only where sign-ups are trusted."
  default     = true
}

variable "key_cache_ttl" {
  type        = string
  description = "Lease mode: how long an instance trusts an API key lookup (KEY_CACHE_TTL): the revocation delay only while its revocation listener is down (about a second otherwise)."
  default     = "60s"
}

variable "artifact_keep_count" {
  type        = number
  description = "Images kept per function in the gcf-artifacts repository (the newest ones); older images are deleted after 30 days."
  default     = 5

  validation {
    condition     = var.artifact_keep_count >= 1 && floor(var.artifact_keep_count) == var.artifact_keep_count
    error_message = "artifact_keep_count must be a whole number, 1 or more."
  }
}

variable "mail_from" {
  type        = string
  description = "Sender of the notices' emails (MAIL_FROM), e.g. \"Paymeter <billing@example.com>\"."
  default     = "Paymeter <noreply@localhost>"
}

variable "smtp_enabled" {
  type        = bool
  description = "Send the notices' emails: TaskNotify mounts the smtp-url secret as SMTP_URL (add its version first, see README.md)."
  default     = false
}

variable "operator_webhook_url" {
  type        = string
  description = "The operator's webhook for signed notice events (OPERATOR_WEBHOOK_URL); empty: none. TaskNotify mounts the operator-webhook-secret secret (add its version first)."
  default     = ""

  validation {
    condition     = var.operator_webhook_url == "" || startswith(var.operator_webhook_url, "https://")
    error_message = "operator_webhook_url must be empty or an https:// URL."
  }
}
