//! Integration tests: the real `hitsave` binary against a real PostgreSQL (started by
//! `cargo xtask test`), spoken to over HTTP.

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hitsave_db::testing::{TestDb, free_port, write_secret};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::Connection;

const JWT_SECRET: &str = "test-jwt-secret-0123456789abcdef";
const GH_SECRET: &str = "gh-client-secret-value-xyz";

struct Server {
    child: Child,
    base: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

/// Environment for a server on `db`, with the secret files in `dir`.
fn server_env(db: &TestDb, dir: &std::path::Path, port: u16) -> Vec<(&'static str, String)> {
    let mut env = db.env();
    env.push(("HOST", "127.0.0.1".into()));
    env.push(("PORT", port.to_string()));
    env.push((
        "JWT_SECRET_FILE",
        write_secret(dir, "jwt_secret", JWT_SECRET)
            .display()
            .to_string(),
    ));
    env.push((
        "GH_CLIENT_SECRET_FILE",
        write_secret(dir, "gh_client_secret", &format!("{GH_SECRET}\n"))
            .display()
            .to_string(),
    ));
    env
}

fn hitsave() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hitsave"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    cmd
}

impl Server {
    async fn start(db: &TestDb, extra: &[(&str, &str)]) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let log = dir.path().join("server.log");
        let child = hitsave()
            .envs(server_env(db, dir.path(), port))
            .envs(extra.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn hitsave");
        let server = Server {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log,
            _dir: dir,
        };
        server.wait_until_up().await;
        server
    }

    async fn wait_until_up(&self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if reqwest::get(format!("{}/health", self.base)).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("hitsave did not answer /health; log:\n{}", self.logs());
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `hitsave healthcheck` (the container health check) pointed at this server.
    fn healthcheck(&self) -> bool {
        let port = self.base.rsplit(':').next().unwrap();
        hitsave()
            .arg("healthcheck")
            .env("PORT", port)
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success()
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, sig: Signal) {
        kill(Pid::from_raw(self.child.id() as i32), sig).unwrap();
    }

    async fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "hitsave did not exit in {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn migrated_db(label: &str) -> TestDb {
    let db = TestDb::create(label).await;
    let mut conn = db.connect().await;
    hitsave_db::schema::MIGRATOR.run(&mut conn).await.unwrap();
    db
}

fn session_token(login: &str, secret: &str, expires_in: i64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({ "sub": login, "exp": now + expires_in }),
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

/// GET `url` with `Authorization: Bearer <token>` and parse the JSON body.
async fn get_json(http: &reqwest::Client, url: String, token: &str) -> Value {
    http.get(url)
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

// ---- configuration ----

fn start_expecting_config_error(env: Vec<(&'static str, String)>) -> String {
    let out = hitsave().envs(env).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "expected exit 2, got {out:?}");
    String::from_utf8(out.stderr).unwrap()
}

#[tokio::test]
async fn config_errors_name_the_variable_and_path_never_the_value() {
    let db = TestDb::create("config").await;
    let dir = tempfile::tempdir().unwrap();
    let password = std::fs::read_to_string(&db.password_file).unwrap();
    let base = server_env(&db, dir.path(), free_port());
    let without = |var: &str| -> Vec<(&'static str, String)> {
        base.iter().filter(|(k, _)| *k != var).cloned().collect()
    };
    let mut errors = Vec::new();

    let err = start_expecting_config_error(without("JWT_SECRET_FILE"));
    assert!(err.contains("JWT_SECRET_FILE is not set"), "{err}");
    errors.push(err);

    let empty = write_secret(dir.path(), "empty", "\n");
    let mut env = without("GH_CLIENT_SECRET_FILE");
    env.push(("GH_CLIENT_SECRET_FILE", empty.display().to_string()));
    let err = start_expecting_config_error(env);
    assert!(err.contains("GH_CLIENT_SECRET_FILE"), "{err}");
    assert!(err.contains(&empty.display().to_string()), "{err}");
    assert!(err.contains("is empty"), "{err}");
    errors.push(err);

    let mut env = without("POSTGRES_PASSWORD_FILE");
    env.push(("POSTGRES_PASSWORD_FILE", "/nonexistent/pg_password".into()));
    let err = start_expecting_config_error(env);
    assert!(err.contains("POSTGRES_PASSWORD_FILE"), "{err}");
    assert!(err.contains("/nonexistent/pg_password"), "{err}");
    errors.push(err);

    // A secret placed in the environment is refused, and its value is not echoed.
    let mut env = base.clone();
    env.push(("JWT_SECRET", "leaked-in-env-123".into()));
    let err = start_expecting_config_error(env);
    assert!(
        err.contains("JWT_SECRET is set in the environment"),
        "{err}"
    );
    assert!(!err.contains("leaked-in-env-123"), "{err}");
    errors.push(err);

    let mut env = without("PORT");
    env.push(("PORT", "eighty".into()));
    let err = start_expecting_config_error(env);
    assert!(err.contains("PORT=\"eighty\" is not valid"), "{err}");
    errors.push(err);

    for err in &errors {
        for secret in [password.trim(), JWT_SECRET, GH_SECRET] {
            assert!(!err.contains(secret), "secret value in: {err}");
        }
    }
}

// ---- health and readiness ----

#[tokio::test]
async fn ready_only_after_migrations_and_health_reports_the_build() {
    let db = TestDb::create("ready").await;
    let server = Server::start(
        &db,
        &[
            ("HITSAVE_RELEASE", "20261101000000-0123456789ab"),
            ("HITSAVE_COMMIT", "0123456789abcdef0123456789abcdef01234567"),
        ],
    )
    .await;

    let health: Value = reqwest::get(server.url("/health"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["version"], env!("CARGO_PKG_VERSION"));
    // The release and commit come from the environment install sets, not the binary.
    assert_eq!(health["release"], "20261101000000-0123456789ab");
    assert_eq!(health["commit"], "0123456789abcdef0123456789abcdef01234567");

    let res = reqwest::get(server.url("/ready")).await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["ready"], false);
    assert!(
        body["reason"].as_str().unwrap().contains("not applied"),
        "{body}"
    );
    assert!(!server.healthcheck(), "unhealthy before migrations");

    let mut conn = db.connect().await;
    hitsave_db::schema::MIGRATOR.run(&mut conn).await.unwrap();
    let res = reqwest::get(server.url("/ready")).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.json::<Value>().await.unwrap()["ready"], true);
    assert!(server.healthcheck(), "healthy once migrated");
}

#[tokio::test]
async fn not_ready_while_the_database_is_unreachable() {
    let db = TestDb::create("nodb").await;
    let unused = free_port().to_string();
    let server = Server::start(&db, &[("POSTGRES_PORT", &unused)]).await;
    // The process is alive (liveness) even though it cannot work (readiness).
    assert_eq!(
        reqwest::get(server.url("/health")).await.unwrap().status(),
        StatusCode::OK
    );
    let res = reqwest::get(server.url("/ready")).await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = res.json().await.unwrap();
    assert!(
        body["reason"]
            .as_str()
            .unwrap()
            .contains("database unavailable"),
        "{body}"
    );
}

// ---- waitlist ----

#[tokio::test]
async fn waitlist_validates_and_is_idempotent() {
    let db = migrated_db("waitlist").await;
    let server = Server::start(&db, &[]).await;
    let http = reqwest::Client::new();
    let put = |body: Value| http.put(server.url("/waitlist")).json(&body).send();

    let res = put(json!({ "email": "ada@example.com" })).await.unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let res = put(json!({ "email": " ADA@Example.com " })).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.json::<Value>().await.unwrap()["joined"], true);

    for bad in [json!({ "email": "not-an-email" }), json!({ "email": "" })] {
        let res = put(bad).await.unwrap();
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
        assert!(res.json::<Value>().await.unwrap()["error"].is_string());
    }
    let res = http
        .put(server.url("/waitlist"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);

    let mut conn = db.connect().await;
    let rows: Vec<String> = sqlx::query_scalar("SELECT email FROM waitlist")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    assert_eq!(rows, vec!["ada@example.com".to_string()]);
}

// ---- API keys and evals ----

#[tokio::test]
async fn api_keys_are_stored_hashed_and_authorise_evals() {
    let db = migrated_db("evals").await;
    let server = Server::start(&db, &[]).await;
    let http = reqwest::Client::new();

    let issue = |login: &str| {
        http.post(server.url("/api_keys"))
            .bearer_auth(session_token(login, JWT_SECRET, 3600))
            .json(&json!({ "label": "laptop" }))
            .send()
    };
    let res = issue("ada").await.unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let issued: Value = res.json().await.unwrap();
    let key = issued["key"].as_str().unwrap().to_owned();
    assert!(key.starts_with("hs_"));
    assert_eq!(issued["prefix"], &key[..11]);

    // Only the SHA-256 is stored; the key itself is nowhere in the table.
    let mut conn = db.connect().await;
    let (hash, dump): (Vec<u8>, String) =
        sqlx::query_as("SELECT key_hash, row_to_json(api_keys)::text FROM api_keys")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(
        hash,
        <sha2::Sha256 as sha2::Digest>::digest(key.as_bytes()).to_vec()
    );
    assert!(!dump.contains(&key[3..]), "key stored in clear: {dump}");

    let listed = get_json(
        &http,
        server.url("/api_keys"),
        &session_token("ada", JWT_SECRET, 3600),
    )
    .await;
    assert_eq!(listed["keys"].as_array().unwrap().len(), 1);
    assert_eq!(listed["keys"][0]["label"], "laptop");
    assert!(!listed.to_string().contains(&key));

    let store = |key: &str, result: Value| {
        http.put(server.url("/evals"))
            .bearer_auth(key)
            .json(&json!({ "fn_key": "train.fit", "args_hash": "abc123", "result": result }))
            .send()
    };
    assert_eq!(
        store(&key, json!({ "loss": 0.5 })).await.unwrap().status(),
        StatusCode::CREATED
    );
    assert_eq!(
        store(&key, json!({ "loss": 0.25 })).await.unwrap().status(),
        StatusCode::OK
    );

    let got = get_json(&http, server.url("/evals?fn_key=train.fit"), &key).await;
    let evals = got["evals"].as_array().unwrap();
    assert_eq!(evals.len(), 1);
    assert_eq!(evals[0]["args_hash"], "abc123");
    assert_eq!(evals[0]["result"], json!({ "loss": 0.25 }));

    // Another user's key sees none of ada's evals.
    let other: Value = issue("grace").await.unwrap().json().await.unwrap();
    let theirs = get_json(
        &http,
        server.url("/evals?fn_key=train.fit"),
        other["key"].as_str().unwrap(),
    )
    .await;
    assert_eq!(theirs["evals"], json!([]));

    let res = http
        .get(server.url("/evals"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let res = http
        .put(server.url("/evals"))
        .bearer_auth(&key)
        .json(&json!({ "fn_key": "", "args_hash": "x", "result": 1 }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn requests_without_valid_credentials_are_refused() {
    let db = migrated_db("auth").await;
    let server = Server::start(&db, &[]).await;
    let http = reqwest::Client::new();
    for token in [
        None,
        Some("garbage".to_owned()),
        Some(session_token("ada", "some-other-secret", 3600)),
        Some(session_token("ada", JWT_SECRET, -3600)),
    ] {
        let mut req = http
            .post(server.url("/api_keys"))
            .json(&json!({ "label": "x" }));
        if let Some(t) = &token {
            req = req.bearer_auth(t);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "token {token:?}");
        assert_eq!(res.headers()["www-authenticate"], "Bearer");
        assert!(res.json::<Value>().await.unwrap()["error"].is_string());
    }

    let unknown_key = format!("hs_{}", "0".repeat(64));
    let session = session_token("ada", JWT_SECRET, 3600);
    for key in [None, Some(unknown_key.as_str()), Some(session.as_str())] {
        let mut req = http.get(server.url("/evals?fn_key=f"));
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "key {key:?}");
    }
    let mut conn = db.connect().await;
    let keys: i64 = sqlx::query_scalar("SELECT count(*) FROM api_keys")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(keys, 0);
}

// ---- graceful shutdown ----

/// Sends PUT /waitlist while the test holds an exclusive lock on the table, and returns once
/// the request is waiting for that lock inside the server: a real request in flight, for as
/// long as the returned connection keeps its transaction open.
async fn request_held_in_flight(
    db: &TestDb,
    server: &Server,
    email: &str,
) -> (
    sqlx::PgConnection,
    tokio::task::JoinHandle<reqwest::Result<reqwest::Response>>,
) {
    let mut lock = db.connect().await;
    sqlx::raw_sql("BEGIN; LOCK TABLE waitlist IN ACCESS EXCLUSIVE MODE;")
        .execute(&mut lock)
        .await
        .unwrap();
    let (url, body) = (server.url("/waitlist"), json!({ "email": email }));
    let request =
        tokio::spawn(async move { reqwest::Client::new().put(url).json(&body).send().await });
    wait_for_blocked_query(db).await;
    (lock, request)
}

async fn wait_for_blocked_query(db: &TestDb) {
    let mut conn = db.connect().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity
             WHERE datname = $1 AND wait_event_type = 'Lock'
               AND query LIKE 'INSERT INTO waitlist%'",
        )
        .bind(&db.name)
        .fetch_one(&mut conn)
        .await
        .unwrap();
        if waiting > 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the request never reached the database"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn sigterm_finishes_the_request_in_flight_then_exits() {
    let db = migrated_db("sigterm").await;
    let mut server = Server::start(&db, &[]).await;
    let (mut lock, in_flight) = request_held_in_flight(&db, &server, "inflight@example.com").await;

    server.signal(Signal::SIGTERM);
    // New connections are refused soon after the signal...
    let deadline = Instant::now() + Duration::from_secs(5);
    while reqwest::get(server.url("/health")).await.is_ok() {
        assert!(Instant::now() < deadline, "still accepting after SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // ...while the process stays up for the request in flight.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(server.child.try_wait().unwrap().is_none(), "exited early");

    sqlx::raw_sql("COMMIT").execute(&mut lock).await.unwrap();
    let res = in_flight.await.unwrap().expect("in-flight request failed");
    assert_eq!(res.status(), StatusCode::CREATED);

    let status = server.wait_exit(Duration::from_secs(10)).await;
    assert!(status.success(), "{status:?}\n{}", server.logs());
    assert!(server.logs().contains("shutting down"), "{}", server.logs());
    let mut conn = db.connect().await;
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM waitlist")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(n, 1);
    lock.close().await.unwrap();
}

#[tokio::test]
async fn shutdown_is_bounded_by_the_grace_period() {
    let db = migrated_db("grace").await;
    let mut server = Server::start(&db, &[("SHUTDOWN_GRACE_SECS", "1")]).await;
    let (lock, stuck) = request_held_in_flight(&db, &server, "stuck@example.com").await;

    let signalled = Instant::now();
    server.signal(Signal::SIGTERM);
    let status = server.wait_exit(Duration::from_secs(10)).await;
    let took = signalled.elapsed();
    assert!(status.success(), "{status:?}");
    assert!(took >= Duration::from_millis(900), "exited after {took:?}");
    assert!(took < Duration::from_secs(5), "exited after {took:?}");
    assert!(
        server.logs().contains("grace period over"),
        "{}",
        server.logs()
    );
    assert!(
        stuck.await.unwrap().is_err(),
        "the stuck request cannot have succeeded"
    );
    drop(lock);
}

#[tokio::test]
async fn logs_never_contain_secret_values() {
    let db = migrated_db("logs").await;
    let mut server = Server::start(&db, &[("RUST_LOG", "debug")]).await;
    let http = reqwest::Client::new();
    let res = http
        .post(server.url("/api_keys"))
        .bearer_auth(session_token("ada", JWT_SECRET, 3600))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    let key = res.json::<Value>().await.unwrap()["key"]
        .as_str()
        .unwrap()
        .to_owned();
    server.signal(Signal::SIGINT);
    assert!(server.wait_exit(Duration::from_secs(10)).await.success());
    let logs = server.logs();
    let password = std::fs::read_to_string(&db.password_file).unwrap();
    assert!(logs.contains("issued an API key"), "{logs}");
    for secret in [password.trim(), JWT_SECRET, GH_SECRET, key.as_str()] {
        assert!(!logs.contains(secret), "secret leaked into logs");
    }
}

// ---- secret rotation (`xtask secrets rotate`) ----

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn a_rotated_jwt_secret_still_accepts_old_tokens_until_the_grace_ends() {
    let db = migrated_db("jwtrot").await;
    let files = tempfile::tempdir().unwrap();
    const NEW: &str = "the-new-jwt-secret-after-rotation";
    let new = write_secret(files.path(), "jwt_secret", NEW);
    let previous = write_secret(files.path(), "jwt_secret.previous", JWT_SECRET);
    let until = (now_unix() + 4).to_string();
    let server = Server::start(
        &db,
        &[
            ("JWT_SECRET_FILE", new.to_str().unwrap()),
            ("JWT_SECRET_PREVIOUS_FILE", previous.to_str().unwrap()),
            ("JWT_SECRET_PREVIOUS_UNTIL", &until),
        ],
    )
    .await;
    let http = reqwest::Client::new();
    let before = session_token("ada", JWT_SECRET, 3600);
    let list = |token: String| {
        let http = http.clone();
        let url = server.url("/api_keys");
        async move {
            http.get(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(
        list(before.clone()).await,
        StatusCode::OK,
        "within the grace period"
    );
    let res = http
        .post(server.url("/session/refresh"))
        .bearer_auth(&before)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let refreshed = res.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    // Signed with the new secret: it verifies with it and not with the old one.
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.set_required_spec_claims(&["exp", "sub"]);
    let claims = jsonwebtoken::decode::<Value>(
        &refreshed,
        &jsonwebtoken::DecodingKey::from_secret(NEW.as_bytes()),
        &validation,
    )
    .expect("the refreshed token is signed with the current secret");
    assert_eq!(claims.claims["sub"], "ada");
    assert!(
        jsonwebtoken::decode::<Value>(
            &refreshed,
            &jsonwebtoken::DecodingKey::from_secret(JWT_SECRET.as_bytes()),
            &validation,
        )
        .is_err()
    );
    while now_unix() <= until.parse::<u64>().unwrap() {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        list(before).await,
        StatusCode::UNAUTHORIZED,
        "after the grace period"
    );
    assert_eq!(list(refreshed).await, StatusCode::OK);
    assert_eq!(list(session_token("ada", NEW, 3600)).await, StatusCode::OK);
}

#[tokio::test]
async fn the_database_password_changes_under_a_running_server() {
    let db = migrated_db("pgrot").await;
    let role = format!("rot_{}", std::process::id());
    const OLD: &str = "old-password-0123456789";
    const NEW: &str = "new-password-9876543210";
    let mut admin = db.connect().await;
    sqlx::raw_sql(&format!(
        "DROP ROLE IF EXISTS {role}; CREATE ROLE {role} LOGIN PASSWORD '{OLD}';
         GRANT ALL ON ALL TABLES IN SCHEMA public TO {role};
         GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {role};"
    ))
    .execute(&mut admin)
    .await
    .unwrap();
    // The host's order: new file and previous file first, the role's password after.
    let files = tempfile::tempdir().unwrap();
    let current = write_secret(files.path(), "postgres_password", NEW);
    let previous = write_secret(files.path(), "postgres_password.previous", OLD);
    let server = Server::start(
        &db,
        &[
            ("POSTGRES_USER", role.as_str()),
            ("POSTGRES_PASSWORD_FILE", current.to_str().unwrap()),
            (
                "POSTGRES_PASSWORD_PREVIOUS_FILE",
                previous.to_str().unwrap(),
            ),
            ("RUST_LOG", "info"),
        ],
    )
    .await;
    let http = reqwest::Client::new();
    let ready = || async {
        http.get(server.url("/ready"))
            .send()
            .await
            .unwrap()
            .status()
    };
    assert_eq!(
        ready().await,
        StatusCode::OK,
        "logs in with the previous password"
    );
    sqlx::raw_sql(&format!("ALTER ROLE {role} PASSWORD '{NEW}'"))
        .execute(&mut admin)
        .await
        .unwrap();
    // Its open connections stay; cut them, so the next request must log in again.
    sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1")
        .bind(&role)
        .execute(&mut admin)
        .await
        .unwrap();
    for _ in 0..20 {
        assert_eq!(
            ready().await,
            StatusCode::OK,
            "logs in with the new password"
        );
    }
    let logs = server.logs();
    assert!(logs.contains("switching"), "{logs}");
    for secret in [OLD, NEW] {
        assert!(!logs.contains(secret), "a password leaked into the logs");
    }
    drop(server);
    sqlx::raw_sql(&format!(
        "REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {role};
         REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {role}; DROP ROLE {role}"
    ))
    .execute(&mut admin)
    .await
    .unwrap();
}
