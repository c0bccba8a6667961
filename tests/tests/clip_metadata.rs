//! Custom metadata fields (defined globally or per base production) and review metadata
//! of clips: defined, checked, bulk-edited, filtered and searched, audited, carried by
//! export and import; every bad value refused naming its field, and nothing half-done.

use reqwest::{Method, StatusCode};
use rushes_tests::TestEnv;
use rushes_tests::media::Clip;
use serde_json::{Value, json};

async fn field(env: &TestEnv, body: Value) -> anyhow::Result<Value> {
    let (status, made) = env.post("/api/v1/metadata-fields", body.clone()).await?;
    anyhow::ensure!(status == StatusCode::CREATED, "{body}: {status} {made}");
    Ok(made)
}

/// The paths of the production's clips a filter finds.
async fn found(env: &TestEnv, production: &str, filter: &str) -> anyhow::Result<Vec<String>> {
    let (status, body) = env
        .get(&format!("/api/v1/clips?production_id={production}&{filter}"))
        .await?;
    anyhow::ensure!(status == StatusCode::OK, "{filter}: {status} {body}");
    Ok(body["clips"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["path"].as_str().map(str::to_owned))
        .collect())
}

fn encode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clips_carry_checked_metadata_that_filters_and_travels() -> anyhow::Result<()> {
    let env = TestEnv::with_worker("scan=1").await?;
    for name in ["A001/A001C001.mov", "A001/A001C002.mov"] {
        Clip {
            seconds: 1.0,
            audio_tracks: 0,
            ..Clip::default()
        }
        .write(&env.media_root.join("meta").join(name))?;
    }
    std::fs::create_dir_all(env.media_root.join("other"))?;
    let production = env.production("Meta Show", 1, "meta", None).await?;
    let other_base = env.production("Other Show", 1, "other", None).await?;
    let pid = production["id"].as_str().unwrap_or_default().to_owned();
    let base = production["base_production_id"].clone();
    env.scan(&production["id"]).await?;
    let clips = env.clips(&production["id"]).await?;
    let ids: Vec<Value> = clips.iter().map(|c| c["id"].clone()).collect();
    anyhow::ensure!(ids.len() == 2, "{clips:?}");

    // Fields: global and per base production; bad definitions refused.
    field(
        &env,
        json!({ "name": "scene", "display_name": "Scene", "kind": "text" }),
    )
    .await?;
    field(
        &env,
        json!({ "name": "take", "display_name": "Take", "kind": "number" }),
    )
    .await?;
    field(
        &env,
        json!({ "name": "shot_on", "display_name": "Shot on", "kind": "date" }),
    )
    .await?;
    field(
        &env,
        json!({ "name": "circled", "display_name": "Circled", "kind": "boolean" }),
    )
    .await?;
    let day_night = field(
        &env,
        json!({ "name": "day_night", "display_name": "Day/night", "kind": "choice", "choices": ["day", "night"],
                "base_production_id": base }),
    )
    .await?;
    field(
        &env,
        json!({ "name": "department", "display_name": "Department", "kind": "multi_choice",
                "choices": ["camera", "sound", "art"], "base_production_id": base }),
    )
    .await?;
    field(
        &env,
        json!({ "name": "lens", "display_name": "Lens", "kind": "text",
                "base_production_id": other_base["base_production_id"] }),
    )
    .await?;
    for (bad, status, says) in [
        (
            json!({ "name": "Scene No", "display_name": "x", "kind": "text" }),
            422,
            "name:",
        ),
        (
            json!({ "name": "mood", "display_name": "Mood", "kind": "colour" }),
            422,
            "kind:",
        ),
        (
            json!({ "name": "mood", "display_name": "Mood", "kind": "choice" }),
            422,
            "choices:",
        ),
        (
            json!({ "name": "mood", "display_name": "Mood", "kind": "text", "choices": ["a"] }),
            422,
            "choices:",
        ),
        (
            json!({ "name": "mood", "display_name": " ", "kind": "text" }),
            422,
            "display_name",
        ),
        (
            json!({ "name": "scene", "display_name": "Scene", "kind": "text", "base_production_id": base }),
            409,
            "exists",
        ),
        (
            json!({ "name": "lens", "display_name": "Lens", "kind": "text" }),
            409,
            "exists",
        ),
        (
            json!({ "name": "mood", "display_name": "Mood", "kind": "text",
                 "base_production_id": "00000000-0000-7000-8000-000000000000" }),
            422,
            "base_production_id",
        ),
    ] {
        let (got, body) = env.post("/api/v1/metadata-fields", bad.clone()).await?;
        assert_eq!(got.as_u16(), status, "{bad}: {body}");
        assert!(
            body["error"]["message"].as_str().unwrap_or_default().contains(says),
            "{bad}: {body}"
        );
    }
    let (_, listed) = env
        .get(&format!(
            "/api/v1/metadata-fields?base_production_id={}",
            base.as_str().unwrap_or_default()
        ))
        .await?;
    let names: Vec<&str> = listed["metadata_fields"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f["name"].as_str())
        .collect();
    assert_eq!(
        names,
        ["circled", "scene", "shot_on", "take", "day_night", "department"],
        "global first, not the other base's"
    );
    env.user("viewer", json!({})).await?;
    let token = env.login("viewer").await?;
    let refused = env
        .http
        .post(env.url("/api/v1/metadata-fields"))
        .bearer_auth(&token)
        .json(&json!({ "name": "mood", "display_name": "Mood", "kind": "text" }))
        .send()
        .await?;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN, "only admins define fields");

    // Bulk edit: values checked against each field, all or nothing.
    let good = json!({ "scene": " 12A ", "take": 3, "shot_on": "2026-12-01", "circled": true, "day_night": "night",
                       "department": ["sound", "camera", "sound"] });
    for (bad, says) in [
        (json!({ "take": "three" }), "metadata.take: a number"),
        (json!({ "shot_on": "1/12/2026" }), "metadata.shot_on: a date"),
        (json!({ "circled": "yes" }), "metadata.circled"),
        (json!({ "day_night": "dusk" }), "metadata.day_night"),
        (json!({ "department": ["grip"] }), "metadata.department"),
        (json!({ "mood": "calm" }), "metadata.mood: no such field"),
        (json!({ "lens": "50mm" }), "metadata.lens: no such field"),
    ] {
        let mut asked = good.clone();
        if let (Some(asked), Some(bad)) = (asked.as_object_mut(), bad.as_object()) {
            asked.extend(bad.clone());
        }
        let (status, body) = env
            .patch("/api/v1/clips", json!({ "ids": ids, "metadata": asked }))
            .await?;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {body}");
        assert!(
            body["error"]["message"].as_str().unwrap_or_default().contains(says),
            "{bad}: {body}"
        );
    }
    for (bad, says) in [
        (json!({ "rating": 6 }), "rating"),
        (json!({ "colour_label": "pink" }), "colour_label"),
        (json!({ "review_status": "maybe" }), "review_status"),
        (json!({ "labels": [""] }), "labels"),
    ] {
        let mut asked = json!({ "ids": ids });
        if let (Some(asked), Some(bad)) = (asked.as_object_mut(), bad.as_object()) {
            asked.extend(bad.clone());
        }
        let (status, body) = env.patch("/api/v1/clips", asked).await?;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {body}");
        assert!(
            body["error"]["message"].as_str().unwrap_or_default().contains(says),
            "{bad}: {body}"
        );
    }
    let untouched = env.clips(&production["id"]).await?;
    assert!(
        untouched.iter().all(|c| c["metadata"] == json!({}) && c["rating"] == 0),
        "nothing half-done"
    );

    let (status, body) = env
        .patch(
            "/api/v1/clips",
            json!({ "ids": ids, "metadata": good, "rating": 4, "colour_label": "red", "review_status": "selected",
                    "labels": ["hero"], "add_labels": ["b-roll", "hero"] }),
        )
        .await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["updated"], 2);
    let clip = &env.clips(&production["id"]).await?[0];
    assert_eq!(
        clip["metadata"],
        json!({ "scene": "12A", "take": 3, "shot_on": "2026-12-01", "circled": true, "day_night": "night",
                "department": ["sound", "camera"] })
    );
    assert_eq!(
        (clip["rating"].clone(), clip["colour_label"].clone()),
        (json!(4), json!("red"))
    );
    assert_eq!(clip["review_status"], "selected");
    assert_eq!(clip["labels"], json!(["hero", "b-roll"]));
    let audited: Value =
        sqlx::query_scalar("SELECT after FROM audit_log WHERE action = 'clip.edit' ORDER BY id DESC LIMIT 1")
            .fetch_one(&env.db)
            .await?;
    assert_eq!(audited["updated"], 2);
    assert_eq!(audited["changes"]["rating"], 4);
    assert_eq!(audited["changes"]["metadata"]["set"]["day_night"], "night");

    // One clip changes: a value removed, a label taken off, the colour cleared.
    let first = clips[0]["id"].as_str().unwrap_or_default().to_owned();
    let (status, body) = env
        .patch(
            "/api/v1/clips",
            json!({ "ids": [first], "metadata": { "scene": null, "take": 4 }, "remove_labels": ["hero"],
                    "colour_label": "none", "review_status": "approved", "rating": 5 }),
        )
        .await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, shown) = env.get(&format!("/api/v1/clips/{first}")).await?;
    assert!(shown["metadata"].get("scene").is_none(), "{shown}");
    assert_eq!(shown["labels"], json!(["b-roll"]));
    assert_eq!(shown["colour_label"], Value::Null);

    // Filter and search.
    let (c1, c2) = ("A001/A001C001.mov", "A001/A001C002.mov");
    let first_path = clips[0]["path"].as_str().unwrap_or_default();
    let second_path = if first_path == c1 { c2 } else { c1 };
    assert_eq!(
        found(&env, &pid, &format!("metadata={}", encode(r#"{"day_night":"night"}"#)))
            .await?
            .len(),
        2
    );
    assert_eq!(
        found(&env, &pid, &format!("metadata={}", encode(r#"{"take":4}"#))).await?,
        [first_path]
    );
    assert_eq!(
        found(
            &env,
            &pid,
            &format!("metadata={}", encode(r#"{"department":["camera"]}"#))
        )
        .await?
        .len(),
        2
    );
    assert_eq!(found(&env, &pid, "rating_min=5").await?, [first_path]);
    assert_eq!(found(&env, &pid, "review_status=selected").await?, [second_path]);
    assert_eq!(found(&env, &pid, "colour_label=red").await?, [second_path]);
    assert_eq!(found(&env, &pid, "label=hero").await?, [second_path]);
    assert_eq!(
        found(&env, &pid, "q=12a").await?,
        [second_path],
        "search reads text metadata"
    );
    for bad in [
        "metadata=%5B1%5D",
        "metadata=nope",
        "rating_min=9",
        "review_status=maybe",
        "colour_label=pink",
    ] {
        let (status, body) = env.get(&format!("/api/v1/clips?production_id={pid}&{bad}")).await?;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }

    // A choice still held cannot go; a new one can; a deleted field leaves the clips.
    let dn = day_night["id"].as_str().unwrap_or_default();
    let (status, body) = env
        .patch(&format!("/api/v1/metadata-fields/{dn}"), json!({ "choices": ["day"] }))
        .await?;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, body) = env
        .patch(
            &format!("/api/v1/metadata-fields/{dn}"),
            json!({ "choices": ["day", "night", "dusk"], "display_name": "Time of day" }),
        )
        .await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, fields) = env.get("/api/v1/metadata-fields").await?;
    let take = fields["metadata_fields"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|f| f["name"] == "take")
        .map(|f| f["id"].as_str().unwrap_or_default().to_owned())
        .unwrap_or_default();
    let (status, _) = env
        .call(Method::DELETE, &format!("/api/v1/metadata-fields/{take}"), None)
        .await?;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, shown) = env.get(&format!("/api/v1/clips/{first}")).await?;
    assert!(shown["metadata"].get("take").is_none(), "{shown}");

    // Export carries the fields and the values; another instance creates the fields it
    // lacks and takes the values; a document with a bad value is refused whole.
    let (status, document) = env.get(&format!("/api/v1/productions/{pid}/export")).await?;
    assert_eq!(status, StatusCode::OK);
    let carried: Vec<&str> = document["metadata_fields"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f["name"].as_str())
        .collect();
    assert_eq!(carried, ["circled", "day_night", "department", "scene", "shot_on"]);
    let other = TestEnv::new().await?;
    std::fs::create_dir_all(other.media_root.join("meta"))?;
    let mut document = document.clone();
    document["path"] = json!("meta");
    let mut bad = document.clone();
    bad["clips"][0]["metadata"]["day_night"] = json!("midnight");
    let (status, body) = other.post("/api/v1/productions/import", bad).await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("metadata.day_night"),
        "{body}"
    );
    let (status, imported) = other.post("/api/v1/productions/import", document.clone()).await?;
    assert_eq!(status, StatusCode::CREATED, "{imported}");
    let moved = other.clips(&imported["id"]).await?;
    let again = moved
        .iter()
        .find(|c| c["path"] == second_path)
        .cloned()
        .unwrap_or_default();
    assert_eq!(again["metadata"]["day_night"], "night");
    assert_eq!(again["labels"], json!(["hero", "b-roll"]));
    assert_eq!(again["review_status"], "selected");
    let (_, fields) = other.get("/api/v1/metadata-fields").await?;
    assert_eq!(fields["metadata_fields"].as_array().map(Vec::len), Some(5));
    Ok(())
}
