//! The two apps the install swaps container by container, and everything the pipeline knows
//! about each: the compose service (also the component and image name), its port, the page
//! that reports its release, the page a new container is warmed up on, and its host name.

/// An app of the stack; db and nginx are not swapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum App {
    Api,
    Web,
}

impl App {
    pub const ALL: [App; 2] = [App::Api, App::Web];

    /// The compose service, component and image name.
    pub fn service(self) -> &'static str {
        match self {
            App::Api => "api",
            App::Web => "web",
        }
    }

    /// The app called `service`, if it is one.
    pub fn of_service(service: &str) -> Option<App> {
        App::ALL.into_iter().find(|a| a.service() == service)
    }

    /// The port it listens on inside its container.
    pub fn port(self) -> u16 {
        match self {
            App::Api => 8080,
            App::Web => 3000,
        }
    }

    /// The page that says it serves, with the release it reports (`"release":"<id>"`).
    pub fn ready_path(self) -> &'static str {
        match self {
            App::Api => "/ready",
            App::Web => "/healthz",
        }
    }

    /// The page a new container is warmed up on: what users ask it most.
    pub fn warm_up_path(self) -> &'static str {
        match self {
            App::Api => "/health",
            App::Web => "/",
        }
    }

    /// The host nginx routes to it (as the site template says): `api.<domain>` for the API,
    /// the domain itself for the web app.
    pub fn host(self, domain: &str) -> String {
        match self {
            App::Api => format!("api.{domain}"),
            App::Web => domain.to_owned(),
        }
    }

    /// For messages.
    pub fn describe(self) -> &'static str {
        match self {
            App::Api => "the API",
            App::Web => "the web app",
        }
    }
}

impl std::fmt::Display for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.service())
    }
}

/// A compose service of the stack, as docker-compose.yml names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Service {
    /// PostgreSQL (none with an external database).
    Db,
    /// The API, an [`App`].
    Api,
    /// The web app, an [`App`].
    Web,
    /// The migrator, run once per install.
    Migrate,
    /// nginx in front of the apps.
    Nginx,
}

impl Service {
    /// The compose service name.
    pub const fn name(self) -> &'static str {
        match self {
            Service::Db => "db",
            Service::Api => "api",
            Service::Web => "web",
            Service::Migrate => "migrate",
            Service::Nginx => "nginx",
        }
    }
}

impl From<App> for Service {
    fn from(app: App) -> Service {
        match app {
            App::Api => Service::Api,
            App::Web => Service::Web,
        }
    }
}

impl std::fmt::Display for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
