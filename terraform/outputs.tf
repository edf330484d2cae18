output "site_url" {
  description = "Where users open the web app (Firebase Hosting)."
  value       = local.public_url
}

# Known before the function exists (it depends on variables only), so the
# Stripe endpoint and its signing secret can be made before the first deploy.
output "webhook_url" {
  description = "The endpoint to register in Stripe (Developers > Webhooks) for the events listed in README.md."
  value       = local.function_url["webhook"]
}

output "function_urls" {
  description = "URL of each function, by function name."
  value       = { for name, fn in google_cloudfunctions2_function.fn : name => fn.url }
}

output "tasks_queue" {
  description = "Full name of the Free-grant Cloud Tasks queue (TASKS_QUEUE)."
  value       = local.function_env.TASKS_QUEUE
}

output "stripe_secret_ids" {
  description = "Secret Manager secrets to add the Stripe values to, by the environment variable each becomes."
  value       = { for env, secret in google_secret_manager_secret.stripe : env => secret.secret_id }
}

output "service_accounts" {
  description = "Emails of the functions' runtime account, the task caller and the build account."
  value = {
    functions = google_service_account.functions.email
    tasks     = google_service_account.tasks.email
    build     = google_service_account.build.email
  }
}

output "firebase_web_config" {
  description = "The web app's Firebase config (public by design; Hosting also serves it at /__/firebase/init.json)."
  value = {
    apiKey     = data.google_firebase_web_app_config.web.api_key
    authDomain = data.google_firebase_web_app_config.web.auth_domain
    projectId  = var.project_id
    appId      = google_firebase_web_app.web.app_id
  }
}

output "web_build_env" {
  description = "Shell exports of the web app's build-time Firebase settings: eval \"$(terraform output -raw web_build_env)\" before npm run build."
  value = join("", [for k, v in {
    VITE_FIREBASE_PROJECT_ID  = var.project_id
    VITE_FIREBASE_API_KEY     = data.google_firebase_web_app_config.web.api_key
    VITE_FIREBASE_AUTH_DOMAIN = trimsuffix(trimprefix(local.public_url, "https://"), "/")
  } : "export ${k}='${v}'\n"])
}

output "project_id" {
  description = "The project deployed into (deploy.sh reads it)."
  value       = var.project_id
}
