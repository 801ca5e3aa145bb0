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
    let app = Application::build(config).await?;
    tracing::info!(%host, port = app.port(), "fastchat-api listening");
    // One line on stdout, so that scripts and tests learn the port when it was 0.
    println!("listening on http://{host}:{}", app.port());
    std::io::stdout().flush()?;
    app.run_until_stopped().await?;
    tracing::info!("stopped");
    Ok(())
}
