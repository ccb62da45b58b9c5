//! Chooses the template for an event: the most specific enabled template of its trigger whose
//! integration, product and plan match one of the event's items. Product+plan beats plan, plan
//! beats product, product beats "any product"; at the same specificity the integration's own
//! template beats a shared one (no integration), and another integration's template never
//! answers. With several items (a multi-item subscription), the best match over all items wins;
//! on a tie, the earlier item, then the older template.
//!
//! This one function answers for the pipeline (which email an event gets), the template matrix
//! (which template answers each product × plan × trigger cell) and the preview, so the three
//! cannot disagree.

use crate::trigger::TriggerKind;

/// What choosing needs to know of a template.
pub trait Scoped {
    fn template_id(&self) -> i64;
    /// None: shared by every integration.
    fn integration_id(&self) -> Option<&str>;
    fn trigger(&self) -> TriggerKind;
    fn product_id(&self) -> Option<&str>;
    fn plan_id(&self) -> Option<&str>;
    fn enabled(&self) -> bool;
}

impl<T: Scoped> Scoped for &T {
    fn template_id(&self) -> i64 {
        (**self).template_id()
    }
    fn integration_id(&self) -> Option<&str> {
        (**self).integration_id()
    }
    fn trigger(&self) -> TriggerKind {
        (**self).trigger()
    }
    fn product_id(&self) -> Option<&str> {
        (**self).product_id()
    }
    fn plan_id(&self) -> Option<&str> {
        (**self).plan_id()
    }
    fn enabled(&self) -> bool {
        (**self).enabled()
    }
}

/// One product/plan pair of the event (a subscription item or an invoice line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ItemScope<'a> {
    pub product_id: Option<&'a str>,
    pub plan_id: Option<&'a str>,
}

/// The event being answered: which integration received it and which trigger it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Occasion<'a> {
    pub integration_id: &'a str,
    pub trigger: TriggerKind,
}

/// The chosen template and the index of the item it matched (None: it matched as "any product"
/// with no item, e.g. a one-off charge).
pub fn choose<'t, T: Scoped>(
    templates: &'t [T],
    occasion: Occasion,
    items: &[ItemScope],
) -> Option<(&'t T, Option<usize>)> {
    let no_item = [ItemScope {
        product_id: None,
        plan_id: None,
    }];
    let (items, indexed) = if items.is_empty() {
        (&no_item[..], false)
    } else {
        (items, true)
    };
    let mut best: Option<(u8, usize, i64, &T)> = None;
    let eligible = templates.iter().filter(|t| {
        t.enabled()
            && t.trigger() == occasion.trigger
            && t.integration_id()
                .is_none_or(|i| i == occasion.integration_id)
    });
    for template in eligible {
        let own = u8::from(template.integration_id().is_some());
        for (index, item) in items.iter().enumerate() {
            let Some(score) = specificity(template, item) else {
                continue;
            };
            let score = score * 2 + own;
            let candidate = (score, index, template.template_id(), template);
            let better = match &best {
                None => true,
                Some((s, i, id, _)) => {
                    (
                        score,
                        std::cmp::Reverse(index),
                        std::cmp::Reverse(template.template_id()),
                    ) > (*s, std::cmp::Reverse(*i), std::cmp::Reverse(*id))
                }
            };
            if better {
                best = Some(candidate);
            }
        }
    }
    best.map(|(_, index, _, t)| (t, indexed.then_some(index)))
}

/// None when the template does not apply to the item; otherwise how specific the match is.
fn specificity<T: Scoped>(template: &T, item: &ItemScope) -> Option<u8> {
    let matches = |want: Option<&str>, have: Option<&str>| match want {
        None => Some(false),
        Some(w) if Some(w) == have => Some(true),
        Some(_) => None,
    };
    let product = matches(template.product_id(), item.product_id)?;
    let plan = matches(template.plan_id(), item.plan_id)?;
    Some(u8::from(plan) * 2 + u8::from(product))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct T(i64, Option<&'static str>, Option<&'static str>, bool);
    impl Scoped for T {
        fn template_id(&self) -> i64 {
            self.0
        }
        fn integration_id(&self) -> Option<&str> {
            None
        }
        fn trigger(&self) -> TriggerKind {
            TriggerKind::PaymentFailed
        }
        fn product_id(&self) -> Option<&str> {
            self.1
        }
        fn plan_id(&self) -> Option<&str> {
            self.2
        }
        fn enabled(&self) -> bool {
            self.3
        }
    }

    const OCCASION: Occasion = Occasion {
        integration_id: "int_a",
        trigger: TriggerKind::PaymentFailed,
    };

    fn item(product: &'static str, plan: &'static str) -> ItemScope<'static> {
        ItemScope {
            product_id: Some(product),
            plan_id: Some(plan),
        }
    }

    fn chosen(templates: &[T], items: &[ItemScope]) -> Option<(i64, Option<usize>)> {
        choose(templates, OCCASION, items).map(|(t, i)| (t.0, i))
    }

    #[test]
    fn most_specific_wins_and_falls_back() {
        let all = [
            T(1, None, None, true),
            T(2, Some("prod_a"), None, true),
            T(3, Some("prod_a"), Some("price_gold"), true),
            T(4, None, Some("price_silver"), true),
        ];
        assert_eq!(
            chosen(&all, &[item("prod_a", "price_gold")]),
            Some((3, Some(0)))
        );
        assert_eq!(
            chosen(&all, &[item("prod_a", "price_bronze")]),
            Some((2, Some(0)))
        );
        assert_eq!(
            chosen(&all, &[item("prod_b", "price_silver")]),
            Some((4, Some(0)))
        );
        assert_eq!(
            chosen(&all, &[item("prod_b", "price_x")]),
            Some((1, Some(0)))
        );
        assert_eq!(chosen(&all, &[]), Some((1, None)));
        assert_eq!(
            chosen(&all[1..], &[]),
            None,
            "no any-product template: nothing"
        );
        assert_eq!(chosen(&all[1..], &[item("prod_z", "price_z")]), None);
    }

    #[test]
    fn disabled_templates_are_passed_over() {
        let all = [T(1, None, None, true), T(2, Some("prod_a"), None, false)];
        assert_eq!(chosen(&all, &[item("prod_a", "p")]), Some((1, Some(0))));
        let none = [T(1, None, None, false)];
        assert_eq!(chosen(&none, &[item("prod_a", "p")]), None);
    }

    #[test]
    fn multi_item_picks_the_best_match_over_all_items() {
        let all = [
            T(1, None, None, true),
            T(2, Some("prod_addon"), None, true),
            T(3, Some("prod_main"), Some("price_main"), true),
        ];
        let items = [
            item("prod_addon", "price_addon"),
            item("prod_main", "price_main"),
        ];
        assert_eq!(chosen(&all, &items), Some((3, Some(1))));
        // Equal specificity on two items: the first item wins.
        let all = [
            T(1, Some("prod_b"), None, true),
            T(2, Some("prod_a"), None, true),
        ];
        assert_eq!(
            chosen(&all, &[item("prod_a", "x"), item("prod_b", "y")]),
            Some((2, Some(0)))
        );
        // Any-product template with items: it matches the first item.
        assert_eq!(
            chosen(&[T(9, None, None, true)], &[item("a", "b"), item("c", "d")]),
            Some((9, Some(0)))
        );
    }

    /// A full template: integration, trigger, product, plan.
    struct F(
        i64,
        Option<&'static str>,
        TriggerKind,
        Option<&'static str>,
        Option<&'static str>,
    );
    impl Scoped for F {
        fn template_id(&self) -> i64 {
            self.0
        }
        fn integration_id(&self) -> Option<&str> {
            self.1
        }
        fn trigger(&self) -> TriggerKind {
            self.2
        }
        fn product_id(&self) -> Option<&str> {
            self.3
        }
        fn plan_id(&self) -> Option<&str> {
            self.4
        }
        fn enabled(&self) -> bool {
            true
        }
    }

    #[test]
    fn own_template_beats_shared_at_the_same_specificity_only() {
        use TriggerKind::*;
        let all = [
            F(1, None, PaymentFailed, None, None),
            F(2, Some("int_a"), PaymentFailed, None, None),
            F(3, None, PaymentFailed, Some("prod_a"), None),
            F(
                4,
                Some("int_b"),
                PaymentFailed,
                Some("prod_a"),
                Some("price_a"),
            ),
            F(
                5,
                Some("int_a"),
                PaymentReceived,
                Some("prod_a"),
                Some("price_a"),
            ),
        ];
        let pick = |integration, trigger, items: &[ItemScope]| {
            choose(
                &all,
                Occasion {
                    integration_id: integration,
                    trigger,
                },
                items,
            )
            .map(|(t, _)| t.0)
        };
        assert_eq!(
            pick("int_a", PaymentFailed, &[]),
            Some(2),
            "own any beats shared any"
        );
        assert_eq!(
            pick("int_c", PaymentFailed, &[]),
            Some(1),
            "others get the shared one"
        );
        // A shared product template is more specific than an own any-product one.
        assert_eq!(
            pick("int_a", PaymentFailed, &[item("prod_a", "price_a")]),
            Some(3)
        );
        // Another integration's template never answers; nor does another trigger's.
        assert_eq!(
            pick("int_c", PaymentFailed, &[item("prod_a", "price_a")]),
            Some(3)
        );
        assert_eq!(
            pick("int_b", PaymentFailed, &[item("prod_a", "price_a")]),
            Some(4)
        );
        assert_eq!(pick("int_c", PaymentReceived, &[]), None);
    }
}
