//! Images: encrypted end to end, stored as opaque blobs, readable only by those the
//! message went to.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use fastchat_tests::{eventually, json_lines, paths, Api, CliHome, Cluster};
use reqwest::Method;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(20);

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

/// The one image message in `recv --json` output, and the file it was saved to.
fn received_image(out: &str) -> (Value, Vec<u8>) {
    let line = json_lines(out)
        .into_iter()
        .find(|l| l["kind"] == "image")
        .unwrap_or_else(|| panic!("no image in: {out}"));
    let saved = line["saved"].as_str().expect("saved path").to_owned();
    let bytes = std::fs::read(&saved).expect("saved file");
    (line, bytes)
}

#[tokio::test]
async fn png_and_jpeg_arrive_byte_for_byte_to_a_person_and_a_group_and_nobody_else() {
    let cluster = Cluster::start(2).await;
    let (one, two) = (
        cluster.servers[0].url.clone(),
        cluster.servers[1].url.clone(),
    );
    let alice = CliHome::signed_up(&one, "alice");
    let bob = CliHome::signed_up(&two, "bob");
    let carol = CliHome::signed_up(&one, "carol");
    let png = std::fs::read(fixture("drawing.png")).expect("png fixture");
    let jpeg = std::fs::read(fixture("photo.jpg")).expect("jpeg fixture");

    let png_path = fixture("drawing.png");
    alice
        .run(
            &one,
            &["send", "bob", "--image", png_path.to_str().expect("utf-8")],
            "",
        )
        .success();
    let out = bob.run(&two, &["recv", "--json"], "");
    out.success();
    let (line, saved) = received_image(&out.stdout());
    assert_eq!(saved, png, "the PNG changed on the way");
    assert_eq!(line["image"]["name"], "drawing.png");
    assert_eq!(line["image"]["mime"], "image/png");
    assert!(line["saved"]
        .as_str()
        .expect("path")
        .starts_with(bob.dir.to_str().expect("utf-8")));

    // Only the uploader and the recipient may fetch the blob; to carol it does not exist.
    let db = cluster.db.client().await;
    let blob_id: String = db
        .query_one("SELECT blob_id::text FROM message_attachments", &[])
        .await
        .expect("attachment")
        .get(0);
    let api = Api::new(&one);
    let (alice_http, bob_http, carol_http) =
        (alice.user_on(&api), bob.user_on(&api), carol.user_on(&api));
    assert_eq!(alice_http.blob(&blob_id).await.status, 200);
    assert_eq!(bob_http.blob(&blob_id).await.status, 200);
    carol_http
        .blob(&blob_id)
        .await
        .assert_problem(404, "blob_not_found");
    bob_http
        .blob(&uuid::Uuid::new_v4().to_string())
        .await
        .assert_problem(404, "blob_not_found");
    bob_http
        .blob("not-an-id")
        .await
        .assert_problem(404, "blob_not_found");

    // What the database holds is ciphertext: no run of the file is in it.
    let stored: Vec<u8> = db
        .query_one("SELECT data FROM blobs WHERE id::text = $1", &[&blob_id])
        .await
        .expect("blob")
        .get(0);
    assert_eq!(stored.len(), png.len() + 16, "AES-GCM adds only its tag");
    for start in (0..png.len() - 16).step_by(7) {
        let window = &png[start..start + 16];
        assert!(
            !stored.windows(16).any(|w| w == window),
            "bytes {start}..{} of the PNG are stored in clear",
            start + 16
        );
    }

    // A JPEG into a group: both other members get it.
    alice
        .run(&one, &["group", "create", "pics", "bob", "carol"], "")
        .success();
    let jpeg_path = fixture("photo.jpg");
    alice
        .run(
            &one,
            &[
                "send",
                "--group",
                "pics",
                "--image",
                jpeg_path.to_str().expect("utf-8"),
            ],
            "",
        )
        .success();
    for (home, server) in [(&bob, &two), (&carol, &one)] {
        let out = home.run(server, &["recv", "--json"], "");
        out.success();
        let (line, saved) = received_image(&out.stdout());
        assert_eq!(saved, jpeg, "the JPEG changed on the way");
        assert_eq!(line["group"], "pics");
        assert_eq!(line["image"]["mime"], "image/jpeg");
    }
}

#[tokio::test]
async fn not_images_missing_files_and_damaged_blobs_are_reported_and_never_saved() {
    let cluster = Cluster::start(1).await;
    let server = cluster.servers[0].url.clone();
    let alice = CliHome::signed_up(&server, "alice");
    let bob = CliHome::signed_up(&server, "bob");

    let text_file = alice.dir.join("notes.png");
    std::fs::write(&text_file, "this is not a picture").expect("write");
    let out = alice.run(
        &server,
        &["send", "bob", "--image", text_file.to_str().expect("utf-8")],
        "",
    );
    assert_eq!(out.code(), 2);
    assert!(
        out.stderr()
            .contains("is not a PNG, JPEG, GIF or WebP image"),
        "{}",
        out.stderr()
    );
    let out = alice.run(
        &server,
        &["send", "bob", "--image", "/no/such/file.png"],
        "",
    );
    assert_eq!(out.code(), 2);
    assert!(
        out.stderr().contains("cannot read /no/such/file.png"),
        "{}",
        out.stderr()
    );
    let unreadable = alice.dir.join("locked");
    std::fs::create_dir_all(&unreadable).expect("dir");
    let out = alice.run(
        &server,
        &[
            "send",
            "bob",
            "--image",
            unreadable.to_str().expect("utf-8"),
        ],
        "",
    );
    assert_eq!(out.code(), 2, "{}", out.stderr());
    assert_eq!(cluster.db.count("blobs").await, 0, "something was uploaded");

    // A hostile server swaps the stored bytes: bob is told, and nothing is saved.
    let png_path = fixture("drawing.png");
    alice
        .run(
            &server,
            &["send", "bob", "--image", png_path.to_str().expect("utf-8")],
            "",
        )
        .success();
    let db = cluster.db.client().await;
    db.execute(
        // Flip every bit of one byte: a change whatever the byte was.
        "UPDATE blobs SET data = set_byte(data, 99, get_byte(data, 99) # 255)",
        &[],
    )
    .await
    .expect("tamper");
    let downloads = bob.dir.join("downloads");
    let out = bob.run(&server, &["recv", "--json"], "");
    assert_eq!(out.code(), 5, "{}", out.stderr());
    // The `rejected` line says why (with --json, stderr holds only the error line).
    assert!(
        out.stdout().contains("does not decrypt"),
        "{}",
        out.stdout()
    );
    let saved = std::fs::read_dir(&downloads)
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(saved, 0, "a damaged image was saved");
}

#[tokio::test]
async fn uploads_are_bounded_checked_and_all_or_nothing() {
    let cluster = Cluster::start(1).await;
    let api = cluster.api(0);
    let alice = api.user("alice").await;
    let upload = |body: Vec<u8>, content_type: &str| {
        let request = alice
            .request(Method::POST, paths::BLOBS)
            .header("content-type", content_type)
            .body(body);
        async move { request.send().await }
    };
    const LIMIT: usize = 10 * 1024 * 1024;

    let over = upload(vec![1u8; LIMIT + 1], "application/octet-stream").await;
    match over {
        Ok(response) => assert_eq!(response.status(), 413),
        // The server may close before the client finished writing a refused body.
        Err(e) => assert!(e.is_request() || e.is_body(), "{e}"),
    }
    let exact = upload(vec![2u8; LIMIT], "application/octet-stream")
        .await
        .expect("sent");
    assert_eq!(exact.status(), 201);
    let body: Value = exact.json().await.expect("json");
    assert_eq!(body["size"], LIMIT);

    // Without a Content-Length (chunked), the limit still holds while reading.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..11).map(|_| Ok(vec![3u8; 1024 * 1024])).collect();
    let chunked = alice
        .request(Method::POST, paths::BLOBS)
        .header("content-type", "application/octet-stream")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await;
    if let Ok(response) = chunked {
        assert_eq!(response.status(), 413);
    }

    alice
        .raw(Method::POST, paths::BLOBS, "image/png", vec![1, 2, 3])
        .await
        .assert_problem(415, "unsupported_media_type");
    alice
        .upload_blob(Vec::new())
        .await
        .assert_problem(400, "empty_blob");
    api.raw(
        Method::POST,
        paths::BLOBS,
        None,
        "application/octet-stream",
        vec![1],
    )
    .await
    .assert_problem(401, "missing_token");

    // A client that dies halfway through its upload leaves nothing behind.
    let address = api.base.trim_start_matches("http://").to_owned();
    let mut socket = std::net::TcpStream::connect(&address).expect("connect");
    write!(
        socket,
        "POST {} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/octet-stream\r\nContent-Length: 100000\r\n\r\n",
        paths::BLOBS,
        alice.token,
    )
    .expect("headers");
    socket.write_all(&[9u8; 5000]).expect("part of the body");
    drop(socket);
    eventually(
        WAIT,
        "the server to finish with the broken upload",
        || async {
            let metrics = fastchat_tests::metrics::fetch_metrics(api.admin.as_deref()?).await?;
            let refused = format!(r#"route="{}",status="400""#, paths::BLOBS);
            metrics.lines().any(|l| l.contains(&refused)).then_some(())
        },
    )
    .await;
    assert_eq!(
        cluster.db.count("blobs").await,
        1,
        "only the exact-limit upload is stored"
    );

    // Attachments must be blobs the sender uploaded.
    api.user("bob").await;
    let mallory = api.user("mallory").await;
    let theirs: String = cluster
        .db
        .client()
        .await
        .query_one("SELECT id::text FROM blobs", &[])
        .await
        .expect("blob")
        .get(0);
    let envelope = fastchat_tests::api::opaque_envelope(&["mallory", "bob"]);
    let stolen = mallory
        .send(
            serde_json::json!({"to": "bob", "client_id": uuid::Uuid::new_v4().to_string(),
                               "kind": "image", "envelope": envelope, "attachments": [theirs]}),
        )
        .await;
    stolen.assert_problem(400, "invalid_attachment");
}

#[tokio::test]
async fn uploads_no_message_lists_are_cleaned_up() {
    let cluster = Cluster::start_with(
        1,
        &[
            ("FASTCHAT_BLOB_UNREFERENCED_TTL_SECS", "3"),
            ("FASTCHAT_PURGE_INTERVAL_SECS", "1"),
        ],
    )
    .await;
    let server = cluster.servers[0].url.clone();
    let alice = CliHome::signed_up(&server, "alice");
    let _bob = CliHome::signed_up(&server, "bob");
    let png_path = fixture("drawing.png");
    alice
        .run(
            &server,
            &["send", "bob", "--image", png_path.to_str().expect("utf-8")],
            "",
        )
        .success();
    let orphan = alice
        .user_on(&Api::new(&server))
        .upload_blob(vec![5; 100])
        .await;
    let orphan_id = orphan.assert_status(201)["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let db = cluster.db.client().await;
    eventually(
        Duration::from_secs(30),
        "the unused upload to be deleted",
        || async {
            let left: i64 = db
                .query_one(
                    "SELECT count(*) FROM blobs WHERE id::text = $1",
                    &[&orphan_id],
                )
                .await
                .ok()?
                .get(0);
            (left == 0).then_some(())
        },
    )
    .await;
    assert_eq!(
        cluster.db.count("blobs").await,
        1,
        "the attached image must stay"
    );
}
