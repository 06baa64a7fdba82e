//! The analytics page: every rule's lift against the holdout with its interval, its funnel,
//! the sample-ratio check and the cost in annoyance; lift over time; what the model cost; and
//! the site's analytics settings. The charts are drawn here as SVG ([`super::charts`]).

use std::collections::HashMap;

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use minijinja::{Value, context};

use super::charts::{self, BandPoint};
use super::{Frame, PageError, Viewer, render};
use crate::AdminState;
use crate::error::AdminError;
use crate::manage::analytics::{
    self, AnalysisView, AnalyticsSettingsView, AnalyticsView, ComparisonView, PeriodQuery,
};
use crate::manage::sites;

/// Relative lifts beyond this are drawn at the chart's edge.
const CLIP: f64 = 1.0;

/// `GET /dash/sites/{site}/analytics`.
pub async fn page(
    State(state): State<AdminState>,
    viewer: Viewer,
    Path(key): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, PageError> {
    draw(&state, &viewer, &key, &query, StatusCode::OK, context! {}).await
}

async fn draw(
    state: &AdminState,
    viewer: &Viewer,
    key: &str,
    query: &HashMap<String, String>,
    status: StatusCode,
    extra: Value,
) -> Result<Response, PageError> {
    let text = |k: &str| {
        query
            .get(k)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    let period = PeriodQuery {
        days: match text("days") {
            Some(d) => Some(d.parse().map_err(|_| {
                AdminError::field("days", format!("{d:?} is not a whole number of days"))
            })?),
            None => None,
        },
        from: text("from"),
        to: text("to"),
    };
    let view = analytics::get(state, &viewer.actor, key, &period).await?;
    let settings = analytics::settings(state, &viewer.actor, key).await?;
    let site = sites::get(state, &viewer.actor, key).await?;
    let all = sites::list(state, &viewer.actor).await?;
    let frame = Frame {
        viewer,
        title: "Analytics",
        active: "analytics",
        site: Some(&site),
        sites: &all,
    };
    let export = {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for k in ["days", "from", "to"] {
            if let Some(v) = text(k) {
                q.append_pair(k, &v);
            }
        }
        q.finish()
    };
    let values = context! {
        a => view_context(&view),
        settings => settings,
        days => text("days").unwrap_or_default(),
        from => text("from").unwrap_or_default(),
        to => text("to").unwrap_or_default(),
        export => export,
        done => text("done"),
        is_admin => viewer.actor.require_admin().is_ok(),
        ..extra
    };
    Ok(render(status, "analytics.html", frame.with(values)))
}

fn pct(x: Option<f64>) -> String {
    x.map_or_else(|| "–".to_owned(), |v| format!("{:.1}%", v * 100.0))
}

fn money(x: Option<f64>) -> String {
    x.map_or_else(|| "–".to_owned(), |v| format!("{v:.2}"))
}

/// A comparison in words: the lift and its interval, or why there is none.
fn lift_text(c: &ComparisonView) -> Value {
    match &c.lift {
        Some(l) => context! {
            text => charts::signed_pct(l.relative),
            ci => format!("{} to {}", charts::signed_pct(l.ci_low), charts::signed_pct(l.ci_high)),
            seq => c.sequential.as_ref().map(|s| format!("{} to {}", charts::signed_pct(s.ci_low), charts::signed_pct(s.ci_high))),
            p => format!("{:.3}", l.p_value),
            side => if l.ci_low > 0.0 { "up" } else if l.ci_high < 0.0 { "down" } else { "flat" },
        },
        None => context! { text => "–", ci => c.unanswered.unwrap_or("no lift to show") },
    }
}

fn interval_svg(c: &ComparisonView, title: &str) -> Option<Value> {
    let l = c.lift.as_ref()?;
    let span = [l.ci_low.abs(), l.ci_high.abs(), 0.1]
        .into_iter()
        .filter(|v| v.is_finite())
        .fold(0.0, f64::max)
        .min(CLIP);
    let always = c.sequential.as_ref().map(|s| (s.ci_low, s.ci_high));
    Some(Value::from_safe_string(charts::interval(
        l.relative,
        (l.ci_low, l.ci_high),
        always,
        span,
        title,
    )))
}

fn short_date(rfc3339: &str, step_secs: u64) -> String {
    // `2026-12-01T14:20:00Z`: days as `12-01`, shorter steps as `12-01 14:20`.
    let day = rfc3339.get(5..10).unwrap_or(rfc3339);
    if step_secs >= 86_400 {
        day.to_owned()
    } else {
        format!("{day} {}", rfc3339.get(11..16).unwrap_or(""))
    }
}

fn analysis_context(a: &AnalysisView, step_secs: u64, site: &AnalyticsView) -> Value {
    let name = a.rule.as_deref().unwrap_or("every rule");
    let points: Vec<BandPoint> = a
        .series
        .iter()
        .map(|p| {
            let band = p.sequential.as_ref().or(p.lift.as_ref());
            BandPoint {
                label: short_date(&p.until, step_secs),
                mid: p.lift.as_ref().map(|l| l.relative),
                low: band.map(|l| l.ci_low),
                high: band.map(|l| l.ci_high),
            }
        })
        .collect();
    let chart = (!points.is_empty()).then(|| {
        Value::from_safe_string(charts::band_chart(
            &points,
            CLIP,
            &format!("Conversion lift of {name} over time, with its always-valid 95% interval"),
        ))
    });
    let t = &a.treated;
    let h = &a.holdout;
    let width = |n: u64| (n * 100).checked_div(t.triggered).unwrap_or(0);
    let funnel = vec![
        context! { label => "Triggered", n => t.triggered, pct => width(t.triggered) },
        context! { label => "Shown", n => t.shown, pct => width(t.shown) },
        context! { label => "Engaged", n => t.engaged, pct => width(t.engaged) },
        context! { label => "Converted", n => t.converted, pct => width(t.converted) },
    ];
    let share = |n: u64| {
        let all = t.triggered + h.triggered;
        (all > 0).then(|| n as f64 / all as f64)
    };
    context! {
        rule => a.rule,
        name => a.name,
        status => a.status,
        goal => a.goal,
        flags => a.flags,
        treated => t,
        holdout => h,
        conv_t => pct(t.conversion_rate),
        conv_h => pct(h.conversion_rate),
        rpv_t => money(t.revenue_per_visitor),
        rpv_h => money(h.revenue_per_visitor),
        left_t => pct(t.left_rate),
        left_h => pct(h.left_rate),
        ret_t => pct(t.return_rate),
        ret_h => pct(h.return_rate),
        dismissal => pct(t.dismissal_rate),
        conversion => lift_text(&a.conversion),
        revenue => lift_text(&a.revenue),
        left => lift_text(&a.left),
        returned => lift_text(&a.returned),
        interval => interval_svg(&a.conversion, &format!("Conversion lift of {name} with its 95% interval")),
        srm => a.srm_p_value.map(|p| format!("{p:.4}")),
        srm_bad => a.sample_ratio_mismatch,
        held_share => pct(share(h.triggered)),
        expected_share => format!("{:.1}%", site.holdout_percent),
        chart => chart,
        funnel => funnel,
    }
}

fn view_context(v: &AnalyticsView) -> Value {
    let cost = &v.cost;
    let bars: Vec<(String, f64)> = cost
        .series
        .iter()
        .map(|p| (short_date(&p.until, v.step_secs), p.money))
        .collect();
    let calls: Vec<(String, f64)> = cost
        .series
        .iter()
        .map(|p| (short_date(&p.until, v.step_secs), p.calls as f64))
        .collect();
    let priced = cost.money > 0.0 || cost.calls == 0;
    let cost_chart = if priced {
        charts::bars(&bars, &cost.currency, "Model cost over time")
    } else {
        charts::bars(&calls, "calls", "Model calls over time")
    };
    context! {
        from => v.from.get(..10).unwrap_or(&v.from),
        to => v.to.get(..10).unwrap_or(&v.to),
        holdout_percent => v.holdout_percent,
        window_hours => v.window_secs / 3_600,
        min_sample => v.min_sample,
        bots_excluded => v.bots_excluded,
        overall => analysis_context(&v.overall, v.step_secs, v),
        rules => v.rules.iter().filter(|r| r.treated.triggered + r.holdout.triggered > 0 || r.status == "live").map(|r| analysis_context(r, v.step_secs, v)).collect::<Vec<_>>(),
        cost => context! {
            calls => cost.calls,
            tokens => cost.prompt_tokens + cost.completion_tokens,
            money => format!("{:.2}", cost.money),
            currency => cost.currency,
            visits => cost.visits,
            per_visit => cost.money_per_visit.map(|m| format!("{m:.4}")),
            calls_per_visit => cost.calls_per_visit.map(|m| format!("{m:.3}")),
            extra => cost.extra_conversions.map(|x| format!("{x:.1}")),
            per_extra => cost.money_per_extra_conversion.map(|m| format!("{m:.2}")),
            priced => priced,
            chart => Value::from_safe_string(cost_chart),
        },
    }
}

/// `POST /dash/sites/{site}/analytics/settings`.
pub async fn save_settings(
    State(state): State<AdminState>,
    viewer: Viewer,
    Path(key): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, PageError> {
    let field = |k: &str| form.get(k).map(|s| s.trim()).unwrap_or("");
    let number = |k: &'static str| -> Result<f64, AdminError> {
        field(k)
            .parse::<f64>()
            .map_err(|_| AdminError::field(k, format!("{:?} is not a number", field(k))))
    };
    let parsed = (|| -> Result<AnalyticsSettingsView, AdminError> {
        Ok(AnalyticsSettingsView {
            window_hours: field("window_hours").parse().map_err(|_| {
                AdminError::field(
                    "window_hours",
                    format!("{:?} is not a whole number of hours", field("window_hours")),
                )
            })?,
            min_sample: field("min_sample").parse().map_err(|_| {
                AdminError::field(
                    "min_sample",
                    format!("{:?} is not a whole number", field("min_sample")),
                )
            })?,
            auto_pause: matches!(field("auto_pause"), "1" | "on"),
            prompt_price: number("prompt_price")?,
            completion_price: number("completion_price")?,
            currency: field("currency").to_uppercase(),
        })
    })();
    let result = match parsed {
        Ok(body) => analytics::save_settings(&state, &viewer.actor, &key, body).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(_) => Ok(Redirect::to(&format!(
            "/dash/sites/{key}/analytics?done={}",
            form_urlencoded::byte_serialize(b"Saved the analytics settings.").collect::<String>()
        ))
        .into_response()),
        Err(e) => {
            let (error, error_field) = (e.to_string(), e.field_name().map(str::to_owned));
            draw(
                &state,
                &viewer,
                &key,
                &HashMap::new(),
                e.status(),
                context! { error, error_field },
            )
            .await
        }
    }
}
