use std::io::Write;

use clap::Parser;
use fastchat_api::config::Config;
use fastchat_api::startup::Application;
use fastchat_api::telemetry;

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    telemetry::init(config.log_format);
    let host = config.listen.ip();
    let config_admin_host = config.admin_listen.ip();
    let app = Application::build(config).await?;
    tracing::info!(%host, port = app.port(), "fastchat-api listening");
    // Lines on stdout, so that scripts and tests learn the ports when they were 0.
    println!("listening on http://{host}:{}", app.port());
    println!("admin on http://{}:{}", config_admin_host, app.admin_port());
    std::io::stdout().flush()?;
    app.run_until_stopped().await?;
    tracing::info!("stopped");
    Ok(())
}
