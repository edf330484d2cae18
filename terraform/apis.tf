# The APIs the product uses. They stay enabled on destroy: other things in
# the project may use them, and turning one off can break those.
locals {
  services = toset([
    "artifactregistry.googleapis.com", # images that Cloud Build makes for the functions
    "cloudbuild.googleapis.com",       # builds the function source
    "cloudfunctions.googleapis.com",   # Cloud Functions (2nd gen)
    "cloudresourcemanager.googleapis.com",
    "cloudscheduler.googleapis.com",  # the daily reconcile job
    "cloudtasks.googleapis.com",      # the Free-grant chain
    "firebase.googleapis.com",        # the Firebase project and web app
    "firebasehosting.googleapis.com", # the web app's site
    "firebaserules.googleapis.com",   # Firestore security rules
    "firestore.googleapis.com",
    "iam.googleapis.com",
    "identitytoolkit.googleapis.com", # Firebase Auth / Identity Platform
    "logging.googleapis.com",
    "run.googleapis.com", # 2nd gen functions run on Cloud Run
    "secretmanager.googleapis.com",
    "serviceusage.googleapis.com",
    "storage.googleapis.com", # the source bucket
  ])
}

resource "google_project_service" "enabled" {
  for_each = local.services

  project            = var.project_id
  service            = each.key
  disable_on_destroy = false
}
