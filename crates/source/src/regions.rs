//! ModelArts and IAM endpoints per cloud and region, so that a config can
//! say `region = "eu-de"` instead of spelling out URLs.
//!
//! Sources: Open Telekom Cloud "Regions and Endpoints"
//! (<https://docs.otc.t-systems.com/regions-and-endpoints/>) and the region
//! tables of the Huawei Cloud SDK.

use std::fmt;
use std::str::FromStr;

/// The cloud a source talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Cloud {
    /// Open Telekom Cloud (`*.otc.t-systems.com`).
    #[default]
    Otc,
    /// Huawei Cloud (`*.myhuaweicloud.com`).
    HuaweiCloud,
}

impl FromStr for Cloud {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "otc" => Ok(Cloud::Otc),
            "huaweicloud" => Ok(Cloud::HuaweiCloud),
            other => Err(format!(
                "unknown cloud {other:?}; expected \"otc\" or \"huaweicloud\""
            )),
        }
    }
}

impl fmt::Display for Cloud {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Cloud::Otc => "otc",
            Cloud::HuaweiCloud => "huaweicloud",
        })
    }
}

/// The endpoints of one region. `modelarts` is `None` where the cloud does
/// not offer ModelArts in that region (an explicit `endpoint` is needed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionEndpoints {
    pub modelarts: Option<String>,
    pub iam: String,
}

/// OTC regions: (region, offers ModelArts, IAM host).
const OTC_REGIONS: &[(&str, bool, &str)] = &[
    ("eu-de", true, "iam.eu-de.otc.t-systems.com"),
    ("eu-nl", false, "iam.eu-nl.otc.t-systems.com"),
    ("eu-ch2", false, "iam-pub.eu-ch2.sc.otc.t-systems.com"),
];

/// Huawei Cloud regions with ModelArts.
const HUAWEI_MODELARTS_REGIONS: &[&str] = &[
    "cn-north-1",
    "cn-north-2",
    "cn-north-4",
    "cn-north-9",
    "cn-north-11",
    "cn-north-12",
    "cn-south-1",
    "cn-east-3",
    "cn-east-4",
    "cn-southwest-2",
    "cn-southwest-3",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-southeast-3",
    "ap-southeast-4",
    "af-south-1",
    "af-north-1",
    "la-south-2",
    "la-north-2",
    "sa-brazil-1",
    "tr-west-1",
    "me-east-1",
];

/// Further Huawei Cloud regions that have IAM but no ModelArts listed.
const HUAWEI_IAM_ONLY_REGIONS: &[&str] =
    &["eu-west-0", "eu-west-101", "ru-moscow-1", "ru-northwest-2"];

/// The endpoints of `region` in `cloud`, or an error that lists the known
/// regions.
pub fn endpoints(cloud: Cloud, region: &str) -> Result<RegionEndpoints, String> {
    match cloud {
        Cloud::Otc => OTC_REGIONS
            .iter()
            .find(|(name, _, _)| *name == region)
            .map(|(name, modelarts, iam)| RegionEndpoints {
                modelarts: modelarts.then(|| format!("https://modelarts.{name}.otc.t-systems.com")),
                iam: format!("https://{iam}"),
            })
            .ok_or_else(|| {
                let known: Vec<&str> = OTC_REGIONS.iter().map(|(name, _, _)| *name).collect();
                format!(
                    "unknown Open Telekom Cloud region {region:?}; known: {}",
                    known.join(", ")
                )
            }),
        Cloud::HuaweiCloud => {
            let modelarts = HUAWEI_MODELARTS_REGIONS.contains(&region);
            if !modelarts && !HUAWEI_IAM_ONLY_REGIONS.contains(&region) {
                return Err(format!(
                    "unknown Huawei Cloud region {region:?}; regions with ModelArts: {}",
                    HUAWEI_MODELARTS_REGIONS.join(", ")
                ));
            }
            // The SDK lists ap-southeast-1 (Hong Kong) under the .cn domain.
            let domain = if region == "ap-southeast-1" {
                "myhuaweicloud.cn"
            } else {
                "myhuaweicloud.com"
            };
            Ok(RegionEndpoints {
                modelarts: modelarts.then(|| format!("https://modelarts.{region}.{domain}")),
                iam: format!("https://iam.{region}.myhuaweicloud.com"),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn otc_eu_de_has_modelarts_and_iam() {
        let e = endpoints(Cloud::Otc, "eu-de").unwrap();
        assert_eq!(
            e.modelarts.as_deref(),
            Some("https://modelarts.eu-de.otc.t-systems.com")
        );
        assert_eq!(e.iam, "https://iam.eu-de.otc.t-systems.com");
    }

    #[test]
    fn otc_regions_without_modelarts_still_give_iam() {
        let nl = endpoints(Cloud::Otc, "eu-nl").unwrap();
        assert_eq!(nl.modelarts, None);
        assert_eq!(nl.iam, "https://iam.eu-nl.otc.t-systems.com");
        assert_eq!(
            endpoints(Cloud::Otc, "eu-ch2").unwrap().iam,
            "https://iam-pub.eu-ch2.sc.otc.t-systems.com"
        );
    }

    #[test]
    fn huawei_regions_follow_the_sdk_table() {
        let e = endpoints(Cloud::HuaweiCloud, "cn-north-4").unwrap();
        assert_eq!(
            e.modelarts.as_deref(),
            Some("https://modelarts.cn-north-4.myhuaweicloud.com")
        );
        assert_eq!(e.iam, "https://iam.cn-north-4.myhuaweicloud.com");
        let hk = endpoints(Cloud::HuaweiCloud, "ap-southeast-1").unwrap();
        assert_eq!(
            hk.modelarts.as_deref(),
            Some("https://modelarts.ap-southeast-1.myhuaweicloud.cn")
        );
        assert_eq!(
            endpoints(Cloud::HuaweiCloud, "eu-west-0")
                .unwrap()
                .modelarts,
            None
        );
    }

    #[test]
    fn unknown_regions_and_clouds_are_errors_that_list_what_is_known() {
        let e = endpoints(Cloud::Otc, "eu-fr").unwrap_err();
        assert!(e.contains("eu-de") && e.contains("eu-fr"), "{e}");
        assert!(endpoints(Cloud::HuaweiCloud, "mars-1").is_err());
        assert!("azure".parse::<Cloud>().is_err());
        assert_eq!("huaweicloud".parse::<Cloud>().unwrap(), Cloud::HuaweiCloud);
    }
}
