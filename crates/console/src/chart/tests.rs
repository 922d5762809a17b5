use super::*;

fn labels(count: usize) -> Vec<String> {
    (0..count).map(|i| format!("2026-01-{:02}", i % 31 + 1)).collect()
}

/// A tiny well-formedness check: tags balance, attributes are quoted, and
/// text and attribute values contain no raw `<` or unknown entities.
fn check_well_formed(xml: &str) -> Result<(), String> {
    let mut stack: Vec<&str> = Vec::new();
    let mut rest = xml;
    let mut saw_root = false;
    while !rest.is_empty() {
        let Some(open) = rest.find('<') else {
            check_text(rest)?;
            break;
        };
        check_text(&rest[..open])?;
        if stack.is_empty() && saw_root {
            return Err(format!("content after the root element: {:.40}", &rest[open..]));
        }
        rest = &rest[open + 1..];
        let close = find_tag_end(rest).ok_or("unterminated tag")?;
        let tag = &rest[..close];
        rest = &rest[close + 1..];
        if let Some(name) = tag.strip_prefix('/') {
            match stack.pop() {
                Some(open) if open == name.trim() => {}
                other => return Err(format!("</{name}> closes {other:?}")),
            }
        } else {
            let self_closing = tag.ends_with('/');
            let body = tag.strip_suffix('/').unwrap_or(tag);
            let name = check_start_tag(body)?;
            saw_root = true;
            if !self_closing {
                stack.push(name);
            }
        }
    }
    if !saw_root {
        return Err("no element".into());
    }
    if !stack.is_empty() {
        return Err(format!("unclosed: {stack:?}"));
    }
    Ok(())
}

/// Position of the `>` ending a tag, skipping quoted attribute values.
fn find_tag_end(s: &str) -> Option<usize> {
    let mut quote = None;
    for (i, c) in s.char_indices() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '>') => return Some(i),
            (None, '<') => return None,
            _ => {}
        }
    }
    None
}

/// Checks `name attr="value" ...` and returns the name.
fn check_start_tag(body: &str) -> Result<&str, String> {
    let body = body.trim_end();
    let name_end = body.find(char::is_whitespace).unwrap_or(body.len());
    let name = &body[..name_end];
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == ':') {
        return Err(format!("bad tag name {name:?}"));
    }
    let mut attrs = body[name_end..].trim_start();
    while !attrs.is_empty() {
        let eq = attrs.find('=').ok_or_else(|| format!("attribute without value in <{body}>"))?;
        let attr = &attrs[..eq];
        if attr.is_empty() || !attr.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == ':') {
            return Err(format!("bad attribute name {attr:?}"));
        }
        let value = &attrs[eq + 1..];
        let quote = value.chars().next().filter(|&c| c == '"' || c == '\'').ok_or("unquoted attribute")?;
        let end = value[1..].find(quote).ok_or("unterminated attribute")? + 1;
        check_text(&value[1..end])?;
        attrs = value[end + 1..].trim_start();
    }
    Ok(name)
}

/// Text must not hold `<` or `&` outside the five entities.
fn check_text(text: &str) -> Result<(), String> {
    if text.contains('<') {
        return Err(format!("raw < in {text:?}"));
    }
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        rest = &rest[amp..];
        let ok = ["&amp;", "&lt;", "&gt;", "&quot;", "&apos;"].iter().any(|e| rest.starts_with(e));
        if !ok {
            return Err(format!("bad entity in {text:?}"));
        }
        rest = &rest[1..];
    }
    if text.chars().any(|c| c < ' ' && !matches!(c, '\t' | '\n' | '\r')) {
        return Err(format!("control character in {text:?}"));
    }
    Ok(())
}

#[test]
fn escapes_all_five_characters() {
    assert_eq!(escape(r#"a&b<c>d"e'f"#), "a&amp;b&lt;c&gt;d&quot;e&apos;f");
    assert_eq!(escape("bell\u{7}tab\t"), "belltab\t");
}

#[test]
fn escapes_caller_text_everywhere() {
    let labels = vec!["<b>&".to_owned(), "\"x'".to_owned()];
    let values = [1.0, 2.0];
    let series = [Series { name: "</g><script>", values: &values, colour: "red\"/><x" }];
    for svg in
        [line_chart("A & <B>", &labels, &series, Scale::Count), bar_chart("A & <B>", &labels, &series, Scale::Count)]
    {
        check_well_formed(&svg).unwrap();
        assert!(!svg.contains("<script>"));
        assert!(svg.contains("<title id=\"chart-"));
        assert!(svg.contains("A &amp; &lt;B&gt;</title>"));
        assert!(svg.contains("&lt;b&gt;&amp; — &lt;/g&gt;&lt;script&gt;: 1</title>"));
    }
}

#[test]
fn nice_ticks() {
    assert_eq!(count_ticks(10.0), [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
    assert_eq!(count_ticks(11.0), [0.0, 5.0, 10.0, 15.0]);
    assert_eq!(count_ticks(1.0), [0.0, 1.0, 2.0, 3.0]);
    assert_eq!(count_ticks(0.2), [0.0, 1.0, 2.0, 3.0]);
    assert_eq!(count_ticks(73.0), [0.0, 20.0, 40.0, 60.0, 80.0]);
    assert_eq!(count_ticks(12_345.0), [0.0, 5000.0, 10_000.0, 15_000.0]);
    assert_eq!(count_ticks(1000.0), [0.0, 200.0, 400.0, 600.0, 800.0, 1000.0]);
    assert_eq!(y_ticks(3.0, Scale::Percent), [0.0, 25.0, 50.0, 75.0, 100.0]);
    for i in 1..5000 {
        let max = i as f64 * 1.37f64.powi(i % 97);
        let ticks = count_ticks(max);
        assert!((4..=6).contains(&ticks.len()), "{max}: {ticks:?}");
        assert_eq!(ticks[0], 0.0);
        assert!(*ticks.last().unwrap() >= max.min(MAX_COUNT), "{max}: {ticks:?}");
        let step = ticks[1];
        let mantissa = step / 10f64.powi(step.log10().floor() as i32);
        assert!([1.0, 2.0, 5.0].iter().any(|m| (m - mantissa).abs() < 1e-9), "{step}");
    }
}

#[test]
fn formats_numbers() {
    assert_eq!(format_value(12_345.0, Scale::Count), "12,345");
    assert_eq!(format_value(1_234_567.25, Scale::Count), "1,234,567.3");
    assert_eq!(format_value(999.0, Scale::Count), "999");
    assert_eq!(format_value(0.0, Scale::Count), "0");
    assert_eq!(format_value(12.34, Scale::Percent), "12.3 %");
    assert_eq!(format_value(25.0, Scale::Percent), "25 %");
    assert_eq!(format_tick(25.0, Scale::Percent), "25 %");
    assert_eq!(format_tick(950.0, Scale::Count), "950");
    assert_eq!(format_tick(1200.0, Scale::Count), "1.2k");
    assert_eq!(format_tick(15_000.0, Scale::Count), "15k");
    assert_eq!(format_tick(2_500_000.0, Scale::Count), "2.5M");
    assert_eq!(format_tick(999_999.0, Scale::Count), "1M");
    assert_eq!(format_tick(1000.0, Scale::Count), "1k");
    assert_eq!(format_tick(999_940.0, Scale::Count), "999.9k");
    assert_eq!(format_tick(3e9, Scale::Count), "3G");
    assert_eq!(one_decimal(-0.01), "0");
}

#[test]
fn thins_labels() {
    assert_eq!(thin_labels(0, 12), Vec::<usize>::new());
    assert_eq!(thin_labels(1, 12), [0]);
    assert_eq!(thin_labels(5, 12), [0, 1, 2, 3, 4]);
    assert_eq!(thin_labels(5, 0), [0, 4]);
    for count in 13..2000 {
        let shown = thin_labels(count, 12);
        assert_eq!(shown.len(), 12);
        assert_eq!(shown[0], 0);
        assert_eq!(*shown.last().unwrap(), count - 1);
        assert!(shown.windows(2).all(|w| w[0] < w[1]), "{count}: {shown:?}");
    }
    let svg = line_chart("t", &labels(90), &[Series { name: "s", values: &[1.0; 90], colour: "#000" }], Scale::Count);
    let x_labels = svg.split(r#"<g class="x-labels""#).nth(1).unwrap().split("</g>").next().unwrap();
    let count = x_labels.matches("<text").count();
    assert!((2..=MAX_X_LABELS).contains(&count), "{count}");
}

#[test]
fn empty_chart_says_no_data() {
    let zeros = [0.0, 0.0, f64::NAN, -3.0];
    for svg in [
        line_chart("Empty", &[], &[], Scale::Count),
        bar_chart("Empty", &labels(4), &[], Scale::Percent),
        line_chart("Zero", &labels(4), &[Series { name: "s", values: &zeros, colour: "#000" }], Scale::Count),
        bar_chart("Short", &labels(4), &[Series { name: "s", values: &[], colour: "#000" }], Scale::Count),
    ] {
        check_well_formed(&svg).unwrap();
        assert!(svg.starts_with(r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 720 260""#), "{svg}");
        assert!(svg.contains("<desc"));
        assert!(svg.contains(">No data for this period.</text>"), "{svg}");
        assert!(!svg.contains("<circle") && !svg.contains("class=\"legend\""));
    }
}

#[test]
fn describes_the_data() {
    let a = [3.0, 12_000.0, 5.0];
    let b = [1.0, 1.0, 1.0];
    let series =
        [Series { name: "spam", values: &a, colour: "#c00" }, Series { name: "ham", values: &b, colour: "#0a0" }];
    let svg = bar_chart("Messages", &labels(3), &series, Scale::Count);
    check_well_formed(&svg).unwrap();
    assert!(svg.contains("3 points, from 2026-01-01 to 2026-01-03."), "{svg}");
    assert!(svg.contains("spam: total 12,008, maximum 12,000 (2026-01-02)."), "{svg}");
    assert!(svg.contains("ham: total 3, maximum 1 (2026-01-01)."), "{svg}");
    assert_eq!(svg.matches("<rect").count(), 6 + 2, "six bars and two legend swatches");
    let percent =
        line_chart("Rate", &labels(2), &[Series { name: "r", values: &[10.0, 30.0], colour: "#000" }], Scale::Percent);
    assert!(percent.contains("r: average 20 %, maximum 30 %"), "{percent}");
    assert!(percent.contains(">25 %</text>"));
    assert!(percent.contains("2026-01-02 — r: 30 %</title>"));
}

#[test]
fn is_deterministic_with_distinct_ids() {
    let series = [Series { name: "s", values: &[1.0, 2.0], colour: "#000" }];
    let a = line_chart("t", &labels(2), &series, Scale::Count);
    assert_eq!(a, line_chart("t", &labels(2), &series, Scale::Count));
    assert_ne!(a, bar_chart("t", &labels(2), &series, Scale::Count));
    let id = |svg: &str| svg.split("aria-labelledby=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
    assert_ne!(id(&a), id(&bar_chart("t", &labels(2), &series, Scale::Count)));
}

#[test]
fn never_panics_on_odd_input() {
    let many: Vec<f64> = (0..1000).map(|i| (i * 7919 % 1000) as f64).collect();
    let huge = [f64::MAX, 1e300, f64::INFINITY, f64::MIN_POSITIVE];
    let odd = [f64::NAN, f64::NEG_INFINITY, -5.0, -0.0, 0.5];
    let value_sets: [&[f64]; 7] = [&[], &[42.0], &many, &huge, &odd, &[1e15, 1e15], &[99.95, 100.5]];
    let label_sets = [labels(0), labels(1), labels(1000), vec!["x".repeat(500); 4], vec![String::new(); 3]];
    for values in value_sets {
        for labels in &label_sets {
            for series_count in 0..4 {
                let series: Vec<Series<'_>> = (0..series_count)
                    .map(|i| Series {
                        name: if i == 0 { "" } else { "a rather long series name, longer than most" },
                        values,
                        colour: "#123",
                    })
                    .collect();
                for scale in [Scale::Count, Scale::Percent] {
                    for svg in [line_chart("t", labels, &series, scale), bar_chart("t", labels, &series, scale)] {
                        check_well_formed(&svg).unwrap_or_else(|e| panic!("{e}"));
                        assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg:.2000}");
                        assert!(!svg.contains("=\"-"), "negative coordinate");
                    }
                }
            }
        }
    }
}

#[test]
fn negative_values_are_clamped_to_zero() {
    let series = [Series { name: "s", values: &[-10.0, 4.0], colour: "#000" }];
    let svg = line_chart("t", &labels(2), &series, Scale::Count);
    assert!(svg.contains("2026-01-01 — s: 0</title>"), "{svg}");
    assert!(svg.contains("s: total 4, maximum 4"), "{svg}");
}

#[test]
fn checker_rejects_broken_xml() {
    assert!(check_well_formed("<svg><g></svg>").is_err());
    assert!(check_well_formed("<svg a=\"1>").is_err());
    assert!(check_well_formed("<svg>a < b</svg>").is_err());
    assert!(check_well_formed("<svg>a & b</svg>").is_err());
    assert!(check_well_formed("<svg a=1/>").is_err());
    assert!(check_well_formed("<svg/><svg/>").is_err());
    assert!(check_well_formed("<svg><g/><title>a &amp; b</title></svg>").is_ok());
}
