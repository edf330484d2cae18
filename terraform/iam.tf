# Three service accounts, each with only what its job needs.

# The identity every function runs as.
resource "google_service_account" "functions" {
  project      = var.project_id
  account_id   = "paymeter-functions"
  display_name = "Paymeter functions"
  description  = "Runs the Paymeter Cloud Functions: Firestore, the grant queue, the Stripe secrets."
}

# The identity in the OIDC tokens that Cloud Tasks and Cloud Scheduler send
# to the task handlers; it may invoke those two functions and nothing else.
resource "google_service_account" "tasks" {
  project      = var.project_id
  account_id   = "paymeter-tasks"
  display_name = "Paymeter task caller"
  description  = "Signs the OIDC tokens of Cloud Tasks and Cloud Scheduler calls to TaskGrant and TaskReconcile."
}

# The identity Cloud Build uses to build the function source, instead of
# the broad default compute account.
resource "google_service_account" "build" {
  project      = var.project_id
  account_id   = "paymeter-build"
  display_name = "Paymeter function builds"
  description  = "Builds the Paymeter function source with Cloud Build."
}

# Functions: read and write Firestore (accounts, ledger, keys, events).
resource "google_project_iam_member" "functions_firestore" {
  project = var.project_id
  role    = "roles/datastore.user"
  member  = google_service_account.functions.member
}

# Functions: look up the user behind an ID token. firebaseauth/ verifies
# tokens with VerifyIDTokenAndCheckRevoked, which reads the user record
# (firebaseauth.users.get) to refuse revoked sessions and disabled users.
resource "google_project_iam_member" "functions_auth_viewer" {
  project = var.project_id
  role    = "roles/firebaseauth.viewer"
  member  = google_service_account.functions.member
}

# Functions: add tasks to the grant queue, and only that queue.
resource "google_cloud_tasks_queue_iam_member" "functions_enqueue" {
  project  = var.project_id
  location = google_cloud_tasks_queue.grants.location
  name     = google_cloud_tasks_queue.grants.name
  role     = "roles/cloudtasks.enqueuer"
  member   = google_service_account.functions.member
}

# Functions: add tasks to the notices queue.
resource "google_cloud_tasks_queue_iam_member" "functions_enqueue_notices" {
  project  = var.project_id
  location = google_cloud_tasks_queue.notices.location
  name     = google_cloud_tasks_queue.notices.name
  role     = "roles/cloudtasks.enqueuer"
  member   = google_service_account.functions.member
}

# Functions: name the task caller in the OIDC token of each task they create
# (Cloud Tasks requires actAs on that account, and on no other).
resource "google_service_account_iam_member" "functions_act_as_tasks" {
  service_account_id = google_service_account.tasks.name
  role               = "roles/iam.serviceAccountUser"
  member             = google_service_account.functions.member
}

# Builds: write logs and images, read the uploaded source.
resource "google_project_iam_member" "build" {
  for_each = toset([
    "roles/artifactregistry.writer",
    "roles/logging.logWriter",
    "roles/storage.objectViewer",
  ])

  project = var.project_id
  role    = each.key
  member  = google_service_account.build.member
}

# Who may invoke which function. A 2nd gen function is a Cloud Run service of
# the same name, and Cloud Run checks roles/run.invoker on every request:
# the public functions admit anyone (they check Firebase ID tokens, API keys or
# Stripe signatures themselves); the task handlers admit only the task caller.
resource "google_cloud_run_v2_service_iam_member" "public" {
  for_each = { for name, fn in local.functions : name => fn if fn.public }

  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.fn[each.key].name
  role     = "roles/run.invoker"
  member   = "allUsers"
}

resource "google_cloud_run_v2_service_iam_member" "tasks" {
  for_each = { for name, fn in local.functions : name => fn if !fn.public }

  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.fn[each.key].name
  role     = "roles/run.invoker"
  member   = google_service_account.tasks.member
}
