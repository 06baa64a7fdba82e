//! The pages of the demo shop (`demo/shop/`) as a visitor's browser reports them: path,
//! title, declared page type, the product a page is about, and the tracked elements on it.
//!
//! Scripts walk these pages whatever the server, since the server takes a page's path and
//! type from the widget; against another site the visits simply report the demo's pages.

/// A page of the shop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Page {
    /// Its path.
    pub path: &'static str,
    /// Its document title.
    pub title: &'static str,
    /// The page type its `beckon:page-type` meta tag declares.
    pub page_type: &'static str,
    /// The product it is about (`beckon:product`), if any.
    pub product: Option<&'static str>,
}

/// The home page.
pub const HOME: Page = Page {
    path: "/",
    title: "Northwind Outfitters: trail shoes, packs and layers",
    page_type: "home",
    product: None,
};

/// The category page.
pub const CATEGORY: Page = Page {
    path: "/category.html",
    title: "Trail & Hiking | Northwind Outfitters",
    page_type: "category",
    product: None,
};

/// The membership plans.
pub const PRICING: Page = Page {
    path: "/pricing.html",
    title: "Northwind Club plans and pricing | Northwind Outfitters",
    page_type: "pricing",
    product: None,
};

/// The long article.
pub const ARTICLE: Page = Page {
    path: "/article.html",
    title: "How to choose trail running shoes | Northwind Outfitters Journal",
    page_type: "article",
    product: None,
};

/// The cart.
pub const CART: Page = Page {
    path: "/cart.html",
    title: "Your cart | Northwind Outfitters",
    page_type: "cart",
    product: None,
};

/// The checkout.
pub const CHECKOUT: Page = Page {
    path: "/checkout.html",
    title: "Checkout | Northwind Outfitters",
    page_type: "checkout",
    product: None,
};

/// The product pages.
pub const PRODUCTS: [Page; 4] = [
    Page {
        path: "/product-ridgeline-trail-runner.html",
        title: "Ridgeline Trail Runner | Northwind Outfitters",
        page_type: "product",
        product: Some("NW-RTR-01"),
    },
    Page {
        path: "/product-summit-28-daypack.html",
        title: "Summit 28 Daypack | Northwind Outfitters",
        page_type: "product",
        product: Some("NW-S28-02"),
    },
    Page {
        path: "/product-drizzle-shell-jacket.html",
        title: "Drizzle Shell Jacket | Northwind Outfitters",
        page_type: "product",
        product: Some("NW-DSJ-03"),
    },
    Page {
        path: "/product-ember-merino-base-layer.html",
        title: "Ember Merino Base Layer | Northwind Outfitters",
        page_type: "product",
        product: Some("NW-EMB-04"),
    },
];

/// The membership plans of the pricing page (`data-beckon-item` of its `plan` elements), with
/// their monthly price.
pub const PLANS: [(&str, f64); 3] = [("starter", 19.0), ("growth", 49.0), ("scale", 99.0)];

/// The tracked elements of a product page besides add-to-cart (`data-beckon-track`).
pub const PRODUCT_ELEMENTS: [&str; 3] = ["size-guide", "shipping-info", "returns-info"];

/// The currency the shop reports carts and orders in.
pub const CURRENCY: &str = "USD";
